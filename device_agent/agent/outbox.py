"""Deliver finished results until the server answers for good: the outbox.

A result is in the journal before the first post, so a crash, a reboot or a
week offline loses nothing: whatever is still `finished` is sent again on the
next start. Because the server keeps no request id, a retry after a post that
was stored answers 409 "Run is not in progress" — which we take as final,
and say so honestly: it may also mean the run was reaped before our post.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from device_agent.agent.alarm import Alarm
from device_agent.agent.backoff import Backoff
from device_agent.agent.journal import ACKNOWLEDGED, DEAD, FINISHED, Entry, Journal, JournalState
from device_agent.agent.journal_thread import AsyncJournal
from device_agent.agent.result import ExitReason, Report, failure
from device_agent.lanes import Fail, Lane, Resume, Verdict, lane_for
from device_agent.logs import get_logger
from device_agent.server.client import Answer, AnswerKind, LobuClient

log = get_logger(__name__)

FINAL_409_NOTE: Final = (
    "the server says the run is no longer in progress: either an earlier post of this result "
    "was stored, or the run was reaped or cancelled before it arrived"
)

INTERRUPTED_ROUND_ERROR: Final = (
    "device-agent restarted while this run was between rounds; the round the server asked "
    "for was not started, so that no round runs twice"
)

GiveUp = Callable[[int], bool]
"""Given the number of attempts made so far, stop retrying transient failures now?"""


def never_give_up(attempts: int) -> bool:
    return False


def after(limit: int) -> GiveUp:
    return lambda attempts: attempts >= limit


@dataclass
class _Attempt:
    report: Report
    server_errors: int = 0  # the same 500 in a row
    last_error: str | None = None


class Outbox:
    def __init__(
        self,
        client: LobuClient,
        journal: AsyncJournal,
        *,
        server: str,
        worker_id: str,
        server_error_budget: int,
        max_backoff: float,
        alarm: Alarm | None = None,
        lanes: Callable[[str], Lane] = lane_for,
    ) -> None:
        self._client = client
        self._journal = journal
        self._server = server
        self._worker_id = worker_id
        self._budget = server_error_budget
        self._max_backoff = max_backoff
        self.alarm = alarm or Alarm()
        self._lanes = lanes
        self._in_flight: set[int] = set()
        self.draining = False  # shutting down: retry quickly, a few times, then leave it queued
        self.on_refused: Callable[[int], None] | None = None
        self.waiting: dict[int, str] = {}  # run_id -> why its result is not delivered yet

    def hold(self, run_id: int) -> None:
        """Keep `flush` away from a result its run is about to deliver itself."""
        self._in_flight.add(run_id)

    def release(self, run_id: int) -> None:
        self._in_flight.discard(run_id)

    async def flush(self, give_up: GiveUp = never_give_up) -> list[Answer]:
        """Send every finished result not already being sent."""
        if self._journal.deferring:
            # A "finished" row may be one delivered already whose settle waits for the
            # journal: sending it again would duplicate it. The replay comes first.
            return []
        journal = self._journal.sync
        queued = await self._journal.call(journal.in_state, FINISHED, server=self._server)
        answers = []
        for stale in queued:
            if stale.run_id in self._in_flight:
                continue
            self.hold(stale.run_id)
            try:
                # Re-read under the hold: while an earlier entry was being retried, the run's own
                # task may have delivered this one already.
                entry = await self._journal.call(journal.get, self._server, stale.run_id)
                if entry is not None and entry.state == FINISHED:
                    answers.append(await self._deliver_last_round(entry, give_up))
            finally:
                self.release(stale.run_id)
        return answers

    async def deliver(self, entry: Entry, give_up: GiveUp = never_give_up) -> Answer:
        """Post one result, retrying transient failures, then settle it in the journal."""
        state = _Attempt(entry.report())
        try:
            answer = await self._send_with_retries(entry, state, give_up)
        finally:
            self.waiting.pop(entry.run_id, None)
        await self._settle(entry, state.report, answer)
        return answer

    async def _deliver_last_round(self, entry: Entry, give_up: GiveUp) -> Answer:
        """Deliver a result no run task is waiting for (sent again after a restart). If the
        answer asks for another round, no CLI is started here: that round is reported once
        as interrupted (docs/protocol.md, "Automation lane: exit report and resume")."""
        answer = await self.deliver(entry, give_up)
        verdict = self._verdict(entry, answer)
        if isinstance(verdict, Resume):
            report = failure(INTERRUPTED_ROUND_ERROR, exit_reason=ExitReason.CRASH)
        elif isinstance(verdict, Fail):
            report = failure(verdict.error)
        else:
            return answer
        journal = self._journal.sync
        again = await self._journal.call(journal.record_result, self._server, entry.run_id, report)
        return await self.deliver(again, give_up)

    def _verdict(self, entry: Entry, answer: Answer) -> Verdict | None:
        if not answer.ok:
            return None
        lane = self._lanes(entry.run_type)
        return lane.read_completion(answer, attempt=entry.finalize_attempt)

    async def _send_with_retries(self, entry: Entry, state: _Attempt, give_up: GiveUp) -> Answer:
        """Post until the answer is not transient, or `give_up` says enough."""
        backoff = Backoff(cap=self._max_backoff)
        attempts = 0
        while True:
            answer = await self._post(entry, state)
            attempts += 1
            if answer.kind is not AnswerKind.TRANSIENT:
                return answer  # counted by `_settle`, in the transaction that settles it
            await self._count_attempt(entry)
            if give_up(attempts):
                return answer
            delay = backoff.next(answer.retry_after)
            if self.draining:  # shutting down: a few quick tries, then leave it queued
                delay = min(delay, 1.0)
            await self.alarm.sleep(delay)  # a wake from sleep or a shutdown cuts it short

    async def _post(self, entry: Entry, state: _Attempt) -> Answer:
        lane = self._lanes(entry.run_type)
        body = lane.completion_body(
            state.report,
            run_id=entry.run_id,
            worker_id=self._worker_id,
            attempt=entry.finalize_attempt,
        )
        answer = await self._client.complete(lane.completion_route(entry.run_id), body)
        bound = log.bind(run_id=entry.run_id)
        if answer.kind is AnswerKind.TRANSIENT:
            bound.warning("result not delivered yet; will retry", answer=answer.describe())
            self.waiting[entry.run_id] = answer.describe()
            if _same_server_error(state, answer) and state.server_errors >= self._budget:
                if state.report.failed:
                    self._stop_heartbeat(entry.run_id)
                else:
                    await self._close_as_failed(entry, state, answer)
        return answer

    async def _count_attempt(self, entry: Entry) -> None:
        await self._journal.write_or_defer(
            self._journal.sync.count_attempt, self._server, entry.run_id
        )

    def _stop_heartbeat(self, run_id: int) -> None:
        """Even a failure report is refused: keep the result queued, but stop keeping the run
        alive on the server — a run must not be heartbeated forever (docs/protocol.md,
        "What a real server does")."""
        if self.on_refused is not None:
            self.on_refused(run_id)

    async def _close_as_failed(self, entry: Entry, state: _Attempt, answer: Answer) -> None:
        """A success the server keeps refusing with the same 500 is not transient
        (docs/protocol.md, "What a real server does"): close it with a failure report carrying
        the server's words; the output stays in our journal."""
        error = (
            f"the server refused this run's result {state.server_errors} times "
            f"({answer.describe()}); the output is kept on the device: "
            f"`device-agent history --run {entry.run_id}`"
        )
        state.report = state.report.failing(error)
        state.server_errors = 0
        await self._journal.write_or_defer(
            self._journal.sync.replace_report, self._server, entry.run_id, state.report
        )
        log.error(
            "server keeps refusing a result; closing the run as failed",
            run_id=entry.run_id,
            answer=answer.describe(),
        )

    async def _settle(self, entry: Entry, report: Report, answer: Answer) -> None:
        bound = log.bind(run_id=entry.run_id)
        if answer.kind is AnswerKind.OK:
            verdict = self._verdict(entry, answer)
            if isinstance(verdict, Resume):
                # Not settled: the run goes on with another round (the pipeline runs it).
                await self._count_attempt(entry)
                await self._journal.write_or_defer(
                    self._journal.sync.next_round, self._server, entry.run_id, verdict.attempt
                )
                bound.info("the server asks for another round", attempt=verdict.attempt)
                return
            body = answer.body if isinstance(answer.body, dict) else {}
            label = str(body.get("status") or ("failed" if report.failed else "completed"))
            if body.get("idempotent"):
                label += " (idempotent)"
            await self._record(entry, ACKNOWLEDGED, label, None)
            bound.info("result delivered", status=label)
        elif answer.kind is AnswerKind.FINAL:
            if answer.already_final:
                await self._record(entry, ACKNOWLEDGED, "already final", FINAL_409_NOTE)
                bound.info(
                    "result already final on the server",
                    answer=answer.describe(),
                    note=FINAL_409_NOTE,
                )
            else:  # the server settled it its own way (a bad window, the wrong lane)
                await self._record(entry, ACKNOWLEDGED, "closed by server", answer.describe())
                bound.error("the server closed this run itself", answer=answer.describe())
        elif answer.kind is AnswerKind.REJECTED:
            await self._record(entry, DEAD, "rejected", answer.describe())
            bound.error(
                "server rejected the result for good; kept in the journal",
                answer=answer.describe(),
                see="device-agent history",
            )
        else:
            if answer.kind is not AnswerKind.TRANSIENT:  # a transient one is counted already
                await self._count_attempt(entry)
            bound.warning("result kept in the journal for a later try", answer=answer.describe())

    async def _record(
        self, entry: Entry, state: JournalState, answer: str, message: str | None
    ) -> None:
        journal: Journal = self._journal.sync
        await self._journal.write_or_defer(
            journal.settle,
            self._server,
            entry.run_id,
            state=state,
            answer=answer,
            message=message,
            attempts=1,  # the post answered just now: counted in the same transaction
        )


def _same_server_error(state: _Attempt, answer: Answer) -> bool:
    """Count a 500 that repeats the last one word for word (the duplicate-key error in
    docs/protocol.md, "What a real server does").

    502/503/504 — a proxy or a deploy — and a 500 that changes are an outage, not a
    refusal: they never turn a success into a failure, however long they last.
    """
    words = answer.repeatable_failure
    if words is None:
        state.server_errors, state.last_error = 0, None
        return False
    if words != state.last_error:
        state.server_errors, state.last_error = 0, words
    state.server_errors += 1
    return True
