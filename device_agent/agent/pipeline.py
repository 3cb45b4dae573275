"""One claimed run, from claim to settled result: the per-run pipeline the loop starts.

    claim → record → heartbeat → execute → record result → deliver
                                  ↑                           │
                                  └──── the answer asks ──────┘
                                        for another round

Each step is journaled before the next one acts (docs/protocol.md, "How the
agent settles a result"). What differs per run type — reading the payload,
the prompt, the completion route and body, what the answer means — comes from
the run's lane (`device_agent.lanes`); a lane whose answer may ask for another
round ("resume") gets it here, on the same claimed run, with the heartbeat
still going, until the answer says done or `MAX_ROUNDS` is reached.

Each round's transcript (what the CLI did) is added to the run's and kept in the
journal; once the final report is acknowledged, a run with an `agent_session`
uploads it (device_agent/agent/transcript_upload.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from device_agent import logs
from device_agent.agent import transcript_upload, transcripts
from device_agent.agent.activity import RunBoard
from device_agent.agent.daily_limit import DailyLimit
from device_agent.agent.heartbeat import Heartbeat
from device_agent.agent.journal import ABANDONED, JournalWriteError
from device_agent.agent.journal_thread import AsyncJournal
from device_agent.agent.outbox import GiveUp, Outbox
from device_agent.agent.result import ExitReason, Report, failure
from device_agent.config import Settings
from device_agent.desktop.control_client import Target
from device_agent.executors.execconfig import capped_budget
from device_agent.executors.executor import Executor
from device_agent.executors.mcp_proxy import McpProxy
from device_agent.executors.request import ExecutionRequest, McpWiring
from device_agent.executors.transcript import Transcript
from device_agent.identity.tokens import TokenSource
from device_agent.lanes import Fail, Lane, LaneRun, Resume, lane_for, read_claim
from device_agent.logs import get_logger
from device_agent.server.client import Answer, LobuClient
from device_agent.server.protocol import Claim, PayloadError

log = get_logger(__name__)

MAX_ROUNDS: Final = 8  # a server asking for more rounds than this is not obeyed
REPEATED_CLAIM_ERROR: Final = (
    "the server handed this run to this device a second time; device-agent never executes "
    "a run twice (its first result is in the device's journal)"
)
HUGE_RUN_ID_ERROR: Final = (
    "the server sent a run_id beyond 64 bits, which device-agent cannot keep in its journal; "
    "the run was not executed — check the server"
)
SQLITE_INTEGERS: Final = range(-(2**63), 2**63)
TOO_MANY_ROUNDS_ERROR: Final = (
    f"the server asked for more than {MAX_ROUNDS} rounds of this run; device-agent stopped "
    "so that a CLI is not run without end — check the automation's prompt"
)


@dataclass
class ActiveRun:
    """A run between its claim and the end of its last CLI: what the loop may stop or wake."""

    run_id: int
    name: str
    heartbeat: Heartbeat
    lane: str
    round: int = 1  # the CLI round now running, from 1 (more only when the server resumes)
    cancel: asyncio.Event = field(default_factory=asyncio.Event)


class RunPipeline:
    """Runs claims. The loop hands each claim over with a `free_slot` callback, called once,
    as soon as the run no longer needs its concurrency slot."""

    def __init__(
        self,
        settings: Settings,
        *,
        worker_id: str,
        client: LobuClient,
        executor: Executor,
        journal: AsyncJournal,
        outbox: Outbox,
        tokens: TokenSource,
        on_change: Callable[[], None] = lambda: None,
        lanes: Callable[[str], Lane] = lane_for,
        board: RunBoard | None = None,
        limit: DailyLimit | None = None,
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.server = settings.origin
        self.client = client
        self.executor = executor
        self.journal = journal
        self.outbox = outbox
        self.tokens = tokens
        self.active: dict[int, ActiveRun] = {}  # run_id -> run whose CLI may still run
        self.heartbeats: dict[int, Heartbeat] = {}  # run_id -> lease kept until settled
        self.shutting_down = False  # a claim that arrives now is reported, not started
        self._on_change = on_change
        self._lanes = lanes
        self.board = board or RunBoard()  # what `status` shows of the running runs
        self.limit = limit  # the owner's daily limit: what each round cost is counted there
        # Told once per run whose result was settled (not one the server stopped): notifications.
        self.on_finished: Callable[[LaneRun, Report], object] | None = None

    async def run(
        self,
        claim: Claim,
        free_slot: Callable[[], None],
        give_up: GiveUp,
        *,
        refuse: str | None = None,
    ) -> Answer | None:
        """Execute one claimed run and deliver its result. None if it was not ours to report.
        `refuse`: the run is not executed but failed with this error (a claim the device did
        not ask for: it offered no capacity at its owner's daily limit)."""
        # Each run is its own task, so this tags every log line of the run — the heartbeats,
        # the executor, the delivery — with its run_id, and no other run's lines.
        structlog.contextvars.bind_contextvars(run_id=claim.run_id)
        lane = self._lanes(claim.run_type)
        heartbeat = Heartbeat(
            self.client,
            run_id=claim.run_id,
            worker_id=self.worker_id,
            interval=self.settings.heartbeat_seconds,
        )
        self.outbox.hold(claim.run_id)  # the periodic flush must not race us for this result
        slot = _Once(free_slot)
        try:
            return await self._rounds(claim, lane, heartbeat, slot, give_up, refuse)
        finally:
            if self.limit is not None:
                self.limit.run_ended(self.server, claim.run_id)
            slot()
            self.outbox.release(claim.run_id)
            await heartbeat.stop()
            self.heartbeats.pop(claim.run_id, None)
            self._forget(claim.run_id)

    async def _rounds(
        self,
        claim: Claim,
        lane: Lane,
        heartbeat: Heartbeat,
        slot: _Once,
        give_up: GiveUp,
        refuse: str | None = None,
    ) -> Answer | None:
        parsed = read_claim(lane, claim)
        if not SQLITE_INTEGERS.start <= claim.run_id < SQLITE_INTEGERS.stop:
            # No real server numbers runs like this, and the journal cannot hold it: the
            # run is reported failed, never silently dropped and left claimed.
            log.error("server handed us a run_id beyond 64 bits; not executing it")
            await self._tell_once(claim, lane, HUGE_RUN_ID_ERROR)
            return None
        # The first beat renews the lease while the claim is journaled: both are done before
        # the CLI starts (docs/protocol.md, "Heartbeat"), neither waits for the other.
        first_beat = asyncio.create_task(heartbeat.start())
        try:
            first_claim = await self._record_claim(claim, parsed)
        except JournalWriteError as exc:
            await _cancelled(first_beat)
            # Never run what the journal does not know of: a restart could run it twice.
            await self._tell_once(claim, lane, f"not executed: {exc}")
            return None
        except BaseException:
            first_beat.cancel()
            raise
        if not first_claim:
            await _cancelled(first_beat)
            # Should never happen; if it does, the journal keeps the first result untouched
            # and the server hears once why this claim is not run, rather than nothing.
            log.error("server handed us a run we already claimed; not executing it twice")
            await self._tell_once(claim, lane, REPEATED_CLAIM_ERROR)
            return None
        name = parsed.name if not isinstance(parsed, str) else f"run {claim.run_id}"
        run = ActiveRun(claim.run_id, name, heartbeat, lane=claim.run_type)
        not_started = self.shutting_down  # the poll was in flight when the stop came
        if not_started:
            run.cancel.set()
        self.active[claim.run_id] = run
        self.heartbeats[claim.run_id] = heartbeat
        item_id = parsed.item_id if not isinstance(parsed, str) else str(claim.run_id)
        self.board.started(claim.run_id, Target(item_id, claim.run_type, name))
        self._on_change()
        await first_beat  # the lease is renewed before starting expensive work
        # Redacted as the log is: the device's tokens and token shapes (the run's own secrets
        # are gone already: the executor took them out of each round).
        transcript = Transcript(redact=logs.redactor, fallback_id=f"run-{claim.run_id}")
        nudge: str | None = None
        attempt = 0
        for _ in range(MAX_ROUNDS):
            report = None
            if not heartbeat.lost.is_set():
                report = await self._execute(claim.run_id, parsed, nudge, run, not_started, refuse)
                await self._keep_transcript(claim.run_id, transcript, report)
            if heartbeat.lost.is_set() or report is None:
                # Lost before a round started: nothing to send. Lost while the CLI ran: the
                # lane says whether the server still wants its report.
                last_word = lane.after_loss(report) if report is not None else None
                if last_word is None:
                    await self._abandon(claim.run_id, heartbeat.reason, report)
                    return None
                report = last_word
            if not lane.may_resume:  # the CLI is done: the next run may start meanwhile
                self._forget(claim.run_id)
                slot()
            self._log_finished(parsed, claim.run_type, report)  # once the next run may start
            answer = await self._settle(claim.run_id, report, give_up, attempt)
            verdict = lane.read_completion(answer, attempt=attempt) if answer.ok else None
            if isinstance(verdict, Fail):
                log.error("refusing the round the server asked for", error=verdict.error)
                report = failure(verdict.error)
                answer = await self._settle(claim.run_id, report, give_up, attempt)
                await self._send_transcript(claim.run_id, parsed, transcript, answer, report, slot)
                return answer
            if not isinstance(verdict, Resume):
                self._finished(parsed, report)
                await self._send_transcript(claim.run_id, parsed, transcript, answer, report, slot)
                return answer
            # A heartbeat 409 meanwhile starts nothing more: the next turn of the loop sees it.
            log.info("running another round", round=verdict.attempt + 1, of=MAX_ROUNDS)
            nudge, attempt = verdict.nudge, verdict.attempt
            run.round = attempt + 1
            self._on_change()
        log.error("the server kept asking for another round; failing the run", rounds=MAX_ROUNDS)
        report = failure(TOO_MANY_ROUNDS_ERROR)
        answer = await self._settle(claim.run_id, report, give_up, attempt)
        self._finished(parsed, report)
        await self._send_transcript(claim.run_id, parsed, transcript, answer, report, slot)
        return answer

    async def _keep_transcript(self, run_id: int, transcript: Transcript, report: Report) -> None:
        """Add the round to the run's transcript and keep it in the journal (a write that can
        wait, like the result's, when the disk is full)."""
        if report.transcript is None:
            return
        transcript.add(report.transcript)
        await self.journal.write_or_defer(
            transcripts.save,
            self.journal.sync,
            self.server,
            run_id,
            transcript.jsonl(),
            rounds=transcript.rounds,
        )

    async def _send_transcript(
        self,
        run_id: int,
        parsed: LaneRun | str,
        transcript: Transcript,
        answer: Answer,
        report: Report,
        slot: _Once,
    ) -> None:
        """Upload the run's transcript once its final report was acknowledged, when the run
        has an `agent_session` (docs/protocol.md, "Transcript of an automation run"). However
        the upload goes, the run's outcome stands: it is only said in the log and journal."""
        token = None if isinstance(parsed, str) else parsed.transcript_token
        if token is None or not answer.ok or transcript.rounds == 0:
            return
        # The run is over on the server: nothing holds its slot, lease or place in `status`.
        slot()
        self._forget(run_id)
        heartbeat = self.heartbeats.get(run_id)
        if heartbeat is not None:
            await heartbeat.stop()
        status = transcript_upload.terminal_status(answer.body, report)
        sent = await transcript_upload.upload(
            self.client,
            run_id=run_id,
            terminal_status=status,
            jsonl=transcript.jsonl(),
            session_token=token,
        )
        outcome = transcript_upload.outcome_of(sent, status)
        if sent.ok:
            log.info("transcript uploaded", terminal_status=status, entries=transcript.entries)
        else:
            log.warning(
                "transcript not uploaded; the run's outcome stands",
                answer=sent.describe(),
                terminal_status=status,
                see=f"device-agent history --run {run_id} --transcript",
            )
        await self.journal.write_or_defer(
            transcripts.note_upload, self.journal.sync, self.server, run_id, outcome
        )

    def _log_finished(self, parsed: LaneRun | str, run_type: str, report: Report) -> None:
        """The one line a round leaves in the log (the claim has none of its own)."""
        run = None if isinstance(parsed, str) else parsed
        log.info(
            "run finished",
            watcher=run.name if run else None,
            run_type=run_type,
            agent_kind=self._agent_kind(run) if run else None,
            exit_reason=report.exit_reason,
            exit_code=report.exit_code,
            exit_signal=report.exit_signal,
            failed=report.failed,
            error=report.error,
            duration_ms=report.duration_ms,
            **_loggable(report.details),
        )

    def _finished(self, parsed: LaneRun | str, report: Report) -> None:
        if self.on_finished is None or isinstance(parsed, str):
            return
        try:
            self.on_finished(parsed, report)
        except Exception:  # a listener's bug must never touch the run it is told about
            log.exception("a run-finished listener failed")

    async def _tell_once(self, claim: Claim, lane: Lane, error: str) -> None:
        """Report a claim that is not run, without the journal: one attempt."""
        body = lane.completion_body(
            failure(error), run_id=claim.run_id, worker_id=self.worker_id, attempt=0
        )
        await self.client.complete(lane.completion_route(claim.run_id), body)

    async def _settle(self, run_id: int, report: Report, give_up: GiveUp, attempt: int) -> Answer:
        """Journal a round's result, then deliver it (docs/protocol.md, "How the agent
        settles a result"). `attempt`: the round it belongs to."""
        journal = self.journal.sync
        # The row as written comes back from the same call: no second trip to the journal
        # thread, and the output is not read back (it would be held twice).
        entry = await self.journal.write_or_defer(
            journal.record_result, self.server, run_id, report
        )
        if entry is None:
            # The journal cannot take it (a full disk): the result in hand is still
            # delivered; the journal is brought up to date once it can be written.
            entry = await self.journal.call(
                journal.unrecorded_result, self.server, run_id, report=report
            )
            # The row read back may lag: the round a resume asked for may be deferred too.
            entry = dataclasses.replace(entry, finalize_attempt=attempt)
        return await self.outbox.deliver(entry, give_up)

    async def _record_claim(self, claim: Claim, parsed: LaneRun | str) -> bool:
        digest = hashlib.sha256(
            json.dumps(claim.payload, sort_keys=True, default=str).encode()
        ).hexdigest()
        run = None if isinstance(parsed, str) else parsed
        return await self.journal.call(
            self.journal.sync.record_claim,
            self.server,
            claim.run_id,
            run_type=claim.run_type,
            watcher_id=run.item_id if run else None,
            watcher_name=run.name if run else None,
            agent_kind=self._agent_kind(run) if run else None,
            payload_digest=digest,
        )

    async def _execute(
        self,
        run_id: int,
        parsed: LaneRun | str,
        nudge: str | None,
        run: ActiveRun,
        not_started: bool,
        refuse: str | None = None,
    ) -> Report:
        if refuse is not None:
            log.error("not running a claim the device did not ask for", error=refuse)
            return failure(refuse)
        if isinstance(parsed, str):
            log.error("cannot run this claim; reporting it as failed", error=parsed)
            return failure(parsed)
        kind = self._agent_kind(parsed)
        if not self.executor.has_profile(kind):
            return failure(f"no local agent executor configured for agent_kind='{kind}'")
        try:
            prompt = parsed.prompt(nudge)
        except PayloadError as exc:
            return failure(str(exc))
        config = await self._budgeted(kind, parsed.execution_config)
        if self.limit is not None:
            await self.limit.round_started(self.server, run_id, run.round, kind)
        stop_on_loss = asyncio.create_task(_forward(run.heartbeat.lost, run.cancel))
        try:
            async with self._mcp_wiring(kind, parsed.uses_device_tools) as mcp:
                request = parsed.wire(
                    ExecutionRequest(
                        run_id=run_id,
                        agent_kind=kind,
                        prompt=prompt,
                        execution_config=config,
                        mcp=mcp,
                    ),
                    server=self.server,
                )
                report = await self.executor.execute(
                    request,
                    cancel=run.cancel,
                    on_output=functools.partial(self.board.output, run_id),
                )
        except PayloadError as exc:  # what the run brings cannot be used (its session's URL)
            log.error("cannot run this claim; reporting it as failed", error=str(exc))
            return failure(str(exc))
        except Exception as exc:  # e.g. no loopback port for the tools proxy: the run fails
            # now, reported like any result, rather than staying claimed until a restart.
            log.exception("could not run this claim")
            report = failure(f"device-agent could not run it: {type(exc).__name__}: {exc}")
            await self._count(run_id, run.round, report)
            return report
        finally:
            stop_on_loss.cancel()
        await self._count(run_id, run.round, report)
        if report.exit_reason is ExitReason.CANCELLED and not run.heartbeat.lost.is_set():
            report = report.failing(self._shutdown_error(not_started), ExitReason.CANCELLED)
        return parsed.review(report)

    async def _budgeted(self, kind: str, config: Mapping[str, Any]) -> Mapping[str, Any]:
        """The run's `execution_config` with its per-run budget capped by what is left of the
        owner's daily dollar limit (for a CLI with a budget flag)."""
        if self.limit is None:
            return config
        left = await self.limit.budget_left_usd()
        capped = capped_budget(self.executor.profiles[kind], config, left)
        if capped is not config:
            log.info(
                "per-run budget capped by the daily limit",
                asked=config.get("max_budget_usd"),
                max_budget_usd=capped["max_budget_usd"],
            )
        return capped

    async def _count(self, run_id: int, round_: int, report: Report) -> None:
        """What the round's CLI reported it cost counts towards the daily limit."""
        if self.limit is not None:
            await self.limit.round_finished(self.server, run_id, round_, report)

    @contextlib.asynccontextmanager
    async def _mcp_wiring(self, kind: str, wanted: bool) -> AsyncIterator[McpWiring | None]:
        """The Lobu tools for one run, through a loopback proxy that holds the device token
        and gives the CLI a secret that dies with the run (docs/protocol.md, "execution_config
        and the CLI"). None, and no proxy started, when the CLI's profile wires no tools or
        the run brings its own credential (not `wanted`)."""
        if not (wanted and self.settings.executor.mcp and self.executor.uses_mcp(kind)):
            yield None
            return
        async with McpProxy(f"{self.server}/mcp", self.tokens.current) as proxy:
            yield McpWiring(url=proxy.url, token=proxy.secret)

    def _shutdown_error(self, not_started: bool) -> str:
        if not_started:
            return "device-agent was shutting down when the server handed it this run; not started"
        grace = self.settings.shutdown_grace_seconds
        return (
            f"device-agent was shut down and the run did not finish within its {grace:g} s "
            "grace period"
        )

    def _agent_kind(self, run: LaneRun) -> str:
        return run.agent_kind or self.settings.default_agent

    async def _abandon(self, run_id: int, reason: str | None, report: Report | None) -> None:
        log.warning("run stopped by the server; nothing will be reported", answer=reason)
        # Deferred like any write after the claim when the journal cannot take it (a full
        # disk), and kept in order behind the writes deferred before it.
        if report is not None:  # the CLI had finished: its output stays visible in the journal
            await self.journal.write_or_defer(
                self.journal.sync.record_result, self.server, run_id, report
            )
        await self.journal.write_or_defer(
            self.journal.sync.settle,
            self.server,
            run_id,
            state=ABANDONED,
            answer="stopped by server",
            message=reason,
        )

    def _forget(self, run_id: int) -> None:
        self.board.finished(run_id)
        if self.active.pop(run_id, None) is not None:
            self._on_change()


class _Once:
    """Calls `fn` the first time only."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn: Callable[[], None] | None = fn

    def __call__(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()


def _loggable(details: Any) -> dict[str, object]:
    if not isinstance(details, dict):
        return {}
    keys = ("cost_usd", "usage", "num_turns", "session_id")
    return {key: details[key] for key in keys if key in details}


async def _cancelled(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _forward(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()
