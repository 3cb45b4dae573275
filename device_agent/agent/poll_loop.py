"""The loop: poll, hand claims to the run pipeline — and recover, drain and wake.

One event loop drives everything. `PollLoop` keeps the loop, the concurrency
slots and the drain; each claimed run goes through `pipeline.RunPipeline`.
A claimed run owns a slot from the claim until its CLI has finished; its
delivery goes on after the slot is free, so a slow server never stops the
next run from starting.

At the owner's daily limit (`daily_limit.DailyLimit`) nothing new is claimed until
the day turns: a server known to honour it (one that handed this device
automation or chat runs) is still polled, offering no agent kinds and no
capacity; any other server is not polled at all.

Shutdown (first SIGTERM/SIGINT): start no new poll, give running CLIs
`shutdown_grace_seconds` to finish, cancel the rest (reported as failed with
exit_reason "cancelled"), make a few quick delivery attempts, leave anything
undelivered in the journal. A second signal cuts the grace short.

A poll in flight when the stop comes gets the same grace to be answered: the
server may claim a run into it even after the agent has gone, and such a run,
never heartbeated, would sit `running` on the server for about two hours. Its
answer is taken, and a run it brings is reported at once as not started
(docs/protocol.md, "Poll and claim"). A poll given up on all the same (the grace
ran out, a second signal, a timeout) is logged and noted in the journal, and
`status` says when.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Final

from device_agent import __version__
from device_agent.agent.alarm import Alarm
from device_agent.agent.backoff import Backoff, jittered
from device_agent.agent.daily_limit import RECHECK_SECONDS, DailyLimit
from device_agent.agent.journal import CLAIMED, JournalWriteError
from device_agent.agent.journal_thread import AsyncJournal
from device_agent.agent.limits import Reached
from device_agent.agent.outbox import GiveUp, Outbox, after
from device_agent.agent.pipeline import MAX_ROUNDS, RunPipeline
from device_agent.agent.result import ExitReason, failure
from device_agent.agent.sleepwatch import Clock, watch_for_sleep
from device_agent.agent.status import PROBLEM_STATES, AgentState, PossiblyLostClaim, Status
from device_agent.config import Settings
from device_agent.errors import ExitCode
from device_agent.executors.environment import extended_path
from device_agent.executors.executor import Executor
from device_agent.identity.tokens import TokenSource
from device_agent.lanes.registration import (
    AgentKindsCheck,
    platform_mismatch_message,
    poll_body,
    upgrade_required_message,
)
from device_agent.logs import get_logger
from device_agent.server.client import POLL_BODY_CAP, Answer, AnswerKind, LobuClient
from device_agent.server.protocol import (
    MIN_NEXT_POLL_SECONDS,
    Claim,
    Idle,
    PayloadError,
    claim_in_head,
    parse_poll,
)

log = get_logger(__name__)

# While the journal cannot be written: a probe this often (never more than
# max_backoff_seconds, the longest any failure makes the agent wait).
JOURNAL_RETRY_SECONDS: Final = 10.0
AUTH_RETRY_SECONDS: Final = 60.0  # while the token is refused: one poll a minute, never a hammer
UPGRADE_CHECK_SECONDS: Final = 1800.0  # after upgrade_required: ask again now and then, no more
ONCE_ATTEMPTS: Final = 4  # `run --once` gives a result this many tries before leaving it queued
DRAIN_ATTEMPTS: Final = 3  # likewise while shutting down
# The lanes of a claim that tell a server's era: a current server hands out automation
# and chat runs, and keeps one queued for a device that offers no capacity.
CLAIMED_LANES: Final = ("watcher", "automation", "chat_message")
CURRENT_LANES: Final = ("automation", "chat_message")
RESTARTED_ERROR: Final = (
    "device-agent stopped before it could record this run's result (it was restarted or "
    "killed while the run was executing, or its journal could not be written — the log "
    "says which); it was not run again, so that it is never executed twice — use Run now "
    "if you need it again"
)
# The same for a chat turn, whose error is posted to the conversation: there is no Run now.
RESTARTED_TURN_ERROR: Final = (
    "the device restarted its agent while it was answering this message, so there is no "
    "reply; it was not answered twice — send the message again"
)


class PollLoop:
    def __init__(
        self,
        settings: Settings,
        *,
        worker_id: str,
        client: LobuClient,
        executor: Executor,
        journal: AsyncJournal,
        tokens: TokenSource,
        clock: Clock | None = None,
        on_status: Callable[[Status], None] | None = None,
        wake_check_seconds: float = 5.0,
        poll_alarm: Alarm | None = None,
        platform: str | None = None,
        agent_kinds: AgentKindsCheck | None = None,
        limit_check_seconds: float = RECHECK_SECONDS,
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.server = settings.origin
        self.client = client
        self.journal = journal
        self.tokens = tokens
        self.clock = clock
        self.wake_check_seconds = wake_check_seconds
        self.status = Status(max_rounds=MAX_ROUNDS)
        # A child token is bound to the platform it was minted with: that is what we send.
        self.platform = platform or settings.platform
        self.agent_kinds = agent_kinds or AgentKindsCheck(
            executor.profiles,
            lambda: extended_path(os.environ.get("PATH") or os.defpath, home=_home()),
            default_agent=settings.default_agent,
        )
        self._platform_refused = False  # platform_mismatch is explained once, not every poll
        self._on_status = on_status
        self._poll_alarm = poll_alarm or Alarm()  # what cuts the wait between polls short
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._backoff = Backoff(cap=settings.max_backoff_seconds)
        self._stopping = asyncio.Event()
        self._stop_deadline: float | None = None  # time.monotonic() when the grace is up
        self._resumed = asyncio.Event()  # cleared while paused
        self._resumed.set()
        self._hurry = asyncio.Event()
        self._all_finished = asyncio.Event()
        self._all_finished.set()
        self._tasks: set[asyncio.Task[Answer | None]] = set()
        self.outbox = Outbox(
            client,
            journal,
            server=self.server,
            worker_id=worker_id,
            server_error_budget=settings.server_error_budget,
            max_backoff=settings.max_backoff_seconds,
        )
        self.outbox.on_refused = self._retire_heartbeat
        self.limit = DailyLimit(
            settings.limits,
            journal,
            clock=clock.wall if clock is not None else time.time,
            recheck_seconds=limit_check_seconds,
        )
        # Whether this server keeps a run queued for a device that offers no capacity
        # (a current server: it handed us automation or chat runs); None: not asked yet.
        self._honours_capacity: bool | None = None
        self.pipeline = RunPipeline(
            settings,
            worker_id=worker_id,
            client=client,
            executor=executor,
            journal=journal,
            outbox=self.outbox,
            tokens=tokens,
            on_change=self._runs_changed,
            limit=self.limit,
        )

    # ------------------------------------------------------------ control

    def request_stop(self) -> None:
        """First call: drain. Second call: hurry (cancel running CLIs now)."""
        if self._stopping.is_set():
            log.warning("second stop request: cancelling running runs now")
            self._hurry.set()
        else:
            log.info(
                "stopping: no new runs; waiting for running ones",
                grace_seconds=self.settings.shutdown_grace_seconds,
            )
            self._stopping.set()
            self._stop_deadline = time.monotonic() + self.settings.shutdown_grace_seconds
            self.pipeline.shutting_down = True
            self._set_status(AgentState.STOPPING)
        self.outbox.draining = True
        self._poll_alarm.ring()
        self.outbox.alarm.ring()

    async def until_stopped(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run `work` until it is done (True) or until a stop is asked for, which cancels
        it (False). The exception it raised, if any, is raised here."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
            await asyncio.gather(task, stop, return_exceptions=True)
        if task.cancelled():
            return False
        task.result()
        return True

    def poll_now(self) -> None:
        """ "Run now" or a control request: skip the wait before the next poll."""
        self._backoff.reset()
        self._poll_alarm.ring()

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    def pause(self) -> None:
        """Claim no new runs; running ones finish and deliver as usual."""
        if not self.paused:
            log.info("paused: no new runs until `device-agent resume`")
        self._resumed.clear()
        self._poll_alarm.ring()  # leave the wait so the paused loop stops there

    def resume(self) -> None:
        if self.paused:
            log.info("resumed: polling now")
        self._resumed.set()
        self.poll_now()

    def resume_past_limit(self) -> None:
        """The owner's word: take runs past the daily limit until the day turns (and resume
        if paused)."""
        self.limit.go_past_today()
        self.resume()
        self._set_status(self._busy_or_idle())

    def _retire_heartbeat(self, run_id: int) -> None:
        heartbeat = self.pipeline.heartbeats.get(run_id)
        if heartbeat is not None:
            log.error(
                "the server keeps refusing this run's report; no longer heartbeating it",
                run_id=run_id,
            )
            heartbeat.retire()

    def woke_up(self, seconds_missed: float) -> None:
        log.info(
            "machine woke from sleep; polling and checking runs now",
            slept_seconds=round(seconds_missed),
        )
        self.status.woke_at = time.time()
        self.client.forget_connections()  # kept-alive ones may be dead after a sleep
        self._backoff.reset()
        self._poll_alarm.ring()
        self.outbox.alarm.ring()
        for heartbeat in self.pipeline.heartbeats.values():
            heartbeat.beat_now()

    # -------------------------------------------------------------- entry

    async def run(self, *, once: bool = False) -> ExitCode:
        await self._recover()
        await self.limit.start()
        if once:
            try:
                return await self._run_once()
            finally:
                self._set_status(AgentState.STOPPED)
        watcher = asyncio.create_task(
            watch_for_sleep(self.woke_up, clock=self.clock, interval=self.wake_check_seconds)
        )
        outbox = asyncio.create_task(self._keep_flushing())
        try:
            await self._poll_loop()
        finally:
            await self._drain()
            for task in (watcher, outbox):
                task.cancel()
            await asyncio.gather(watcher, outbox, return_exceptions=True)
            self._set_status(AgentState.STOPPED)
        return ExitCode.OK

    # ----------------------------------------------------------- recovery

    async def _recover(self) -> None:
        """Runs claimed by a previous process that never finished are reported, not re-run;
        a poll it left held is told in the log and in `status` (`PossiblyLostClaim`)."""
        journal = self.journal.sync
        held = await self.journal.call(journal.unanswered_poll)
        if held is not None:
            lost = PossiblyLostClaim(held.server, held.since)
            if lost.matters(time.time()):
                self.status.lost_claim = lost
                log.warning("a run may have been claimed and lost", note=lost.note())
        stranded = await self.journal.call(journal.in_state, CLAIMED, server=self.server)
        for entry in stranded:
            log.warning(
                "found a run interrupted by a restart; reporting it as failed",
                run_id=entry.run_id,
                watcher=entry.watcher_name,
            )
            chat = entry.run_type == "chat_message"  # its error goes to the person who wrote
            error = RESTARTED_TURN_ERROR if chat else RESTARTED_ERROR
            report = failure(error, exit_reason=ExitReason.CRASH)
            await self.journal.call(journal.record_result, self.server, entry.run_id, report)

    async def _keep_flushing(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.outbox.flush(self._give_up)
            except Exception:  # a journal error must not end the outbox for good
                log.exception("sending queued results failed; will try again")
            await self.outbox.alarm.sleep(self.settings.max_backoff_seconds)

    # --------------------------------------------------------------- poll

    async def _poll_loop(self) -> None:
        self._set_status(AgentState.IDLE)
        while await self._free_slot():
            if self.paused:
                self._slots.release()
                self._set_status(self._busy_or_idle())
                await _first_of(self._resumed.wait(), self._stopping.wait())
                continue
            if not await self._journal_ready():
                self._slots.release()
                await self._poll_alarm.sleep(
                    min(JOURNAL_RETRY_SECONDS, self.settings.max_backoff_seconds)
                )
                continue
            at_limit = await self.limit.check() is not None
            if at_limit and not await self._honours_no_capacity():
                # Not one poll until the day turns (or the owner lifts the limit): this
                # server would hand a run to a device that says it has no room.
                self._slots.release()
                self._set_status(self._busy_or_idle())
                await self._poll_alarm.sleep(self.limit.until_recheck())
                continue
            delay = await self._poll_once(at_limit=at_limit)
            if at_limit:
                delay = min(delay, self.limit.until_recheck())
            if delay > 0:
                await self._poll_alarm.sleep(delay)

    async def _journal_ready(self) -> bool:
        """No claim while the journal cannot be written: a claimed run it cannot record
        would be lost or, after a restart, run twice. Checked again until it can."""
        if self.journal.problem is None or await self.journal.writable_again():
            return True
        self._set_status(AgentState.JOURNAL_UNWRITABLE, self.journal.problem)
        return False

    async def _free_slot(self) -> bool:
        """Wait for a concurrency slot; False (holding none) once stopping."""
        if self._stopping.is_set():
            return False
        if not self._slots.locked():  # a slot is free: taken without waiting
            return await self._slots.acquire()
        acquire = asyncio.ensure_future(self._slots.acquire())
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({acquire, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not acquire.done():
            acquire.cancel()
        got = acquire.done() and not acquire.cancelled()
        if got and self._stopping.is_set():
            self._slots.release()
            return False
        return got

    async def _poll_once(self, *, at_limit: bool = False) -> float:
        """Poll, start what was claimed, and return how long to wait before the next poll.

        The journal knows while a poll is out: if this process dies during it, the next
        start says that a run may have been claimed into it and lost (`_recover`). A poll
        answered with a run needs no end mark: the run's claim, journaled next, is one.
        `at_limit`: the owner's daily limit is reached, and the poll offers no capacity."""
        self._poll_alarm.rearm()
        try:
            await self.journal.call(self.journal.sync.poll_held, self.server)
        except JournalWriteError:  # `_journal_ready` says so and waits until it can write
            self._slots.release()
            return 0.0
        started = time.monotonic()
        answer = await self._held_poll(at_limit=at_limit)
        if answer is None:  # a stop cut the held poll short
            await self._poll_over()
            self._slots.release()
            return 0.0
        self.status.last_poll_at = time.time()
        held = time.monotonic() - started >= MIN_NEXT_POLL_SECONDS
        outcome = await self._read_poll(answer, held=held)
        if isinstance(outcome, Claim):
            self._learn_lane(outcome.run_type)
            refuse = self._unasked(outcome) if at_limit else None
            self._start(outcome, refuse=refuse)
            return 0.0
        await self._poll_over()
        self._slots.release()
        return outcome

    async def _poll_over(self) -> None:
        # A failed write is said by the journal, and in `status`; the next poll's mark
        # replaces this one.
        with contextlib.suppress(JournalWriteError):
            await self.journal.call(self.journal.sync.poll_ended)

    async def _honours_no_capacity(self) -> bool:
        """Whether this server is known to keep a run queued for a device that offers no
        capacity: one that has handed this device automation or chat runs. A watcher-era
        server ignores the offer (and so does one never heard from)."""
        if self._honours_capacity is None:
            last = await self.journal.call(
                self.journal.sync.latest_run_type, self.server, CLAIMED_LANES
            )
            self._honours_capacity = last in CURRENT_LANES
        return self._honours_capacity

    def _learn_lane(self, run_type: str) -> None:
        if run_type in CLAIMED_LANES:
            self._honours_capacity = run_type in CURRENT_LANES

    def _unasked(self, claim: Claim) -> str:
        """The error for a run handed over although the poll offered no capacity: it is
        failed, not run, and this server is polled no more until the day turns."""
        self._honours_capacity = False
        reached = self.limit.reached
        why = reached.message if reached is not None else "the daily limit is reached"
        log.error(
            "the server handed over a run although this device offered no capacity; not running it",
            run_id=claim.run_id,
            limit=why,
        )
        return (
            f"not run: this device's {why} (its owner's limit), and it offered the server no "
            "capacity; the server handed it this run anyway — it was not started"
        )

    async def _read_poll(self, answer: Answer, *, held: bool = False) -> Claim | float:
        """A claim to run, or the number of seconds to wait. `held`: the server held the poll
        for a while, so an answer of `next_poll_seconds: 0` is no busy loop."""
        if answer.kind is AnswerKind.OK:
            try:
                parsed = parse_poll(answer.body)
            except PayloadError as exc:
                return self._transient(f"unusable poll answer: {exc}", None)
            self._backoff.reset()
            self.status.upgrade_required = None
            if isinstance(parsed, Idle):
                if parsed.skipped_run_id is not None:
                    log.warning(
                        "server skipped a run",
                        skipped_run_id=parsed.skipped_run_id,
                        error=parsed.error,
                    )
                self._set_status(self._busy_or_idle())
                if held and answer.body.get("next_poll_seconds") == 0:
                    return 0.0  # the hold is spent: poll again at once ("Long-poll")
                return jittered(parsed.next_poll_seconds)
            return parsed
        if answer.kind is AnswerKind.AUTH:
            return await self._token_refused(answer)
        if answer.kind is AnswerKind.TRANSIENT:
            unreadable = _unreadable_claim(answer)
            if unreadable is not None:
                return unreadable
            message = answer.describe()
            if answer.timed_out:
                # The server may have claimed a run for this poll anyway; it then shows as
                # running until the server reaps it (docs/protocol.md, "Long-poll").
                message += (
                    " — a run may have been claimed and not received; it is reaped by the "
                    "server in time. If polls keep timing out, raise poll_timeout_seconds"
                )
                await self._note_abandoned_poll(f"it timed out ({answer.describe()})")
            return self._transient(message, answer.retry_after)
        return self._rejected(answer)

    def _transient(self, message: str, retry_after: float | None) -> float:
        delay = self._backoff.next(retry_after)
        log.warning("poll failed; backing off", error=message, retry_in=round(delay, 1))
        self._set_status(AgentState.BACKING_OFF, message)
        return delay

    async def _token_refused(self, answer: Answer) -> float:
        # refresh() is True only for a token we have not tried yet (the user logged in
        # again), so this can never turn into a loop of refused polls.
        if await self.tokens.refresh():
            log.info("a new token was found after a 401; polling again")
            return 0.0
        message = (
            f"the server refused the token ({answer.describe()}): run `device-agent login` "
            "or set DEVICE_AGENT_TOKEN; retrying once a minute"
        )
        log.error("authentication needed", error=message)
        self._set_status(AgentState.AUTH_NEEDED, message)
        return AUTH_RETRY_SECONDS

    def _rejected(self, answer: Answer) -> float:
        code = _error_code(answer)
        if code == "upgrade_required":
            return self._upgrade_required(answer)
        if code == "platform_mismatch":
            message = platform_mismatch_message(self.platform, _server_text(answer))
            if not self._platform_refused:
                log.error("the server refuses this device's platform", error=message)
            self._platform_refused = True
            self._set_status(AgentState.REJECTED, message)
            return max(self._backoff.next(answer.retry_after), AUTH_RETRY_SECONDS)
        message = f"the server rejected our poll ({answer.describe()}): {answer.rejection_hint()}"
        log.error("poll rejected", error=message)
        self._set_status(AgentState.REJECTED, message)
        return self._backoff.next(answer.retry_after)

    def _upgrade_required(self, answer: Answer) -> float:
        """409 upgrade_required: claim nothing, and ask again only rarely (docs/protocol.md,
        "Automation lane")."""
        message = upgrade_required_message(_server_text(answer))
        if self.status.upgrade_required != message:
            log.error("the server requires a newer device-agent", error=message)
        self.status.upgrade_required = message
        self._set_status(AgentState.REJECTED, message)
        return UPGRADE_CHECK_SECONDS

    # ---------------------------------------------------------------- run

    def _start(
        self, claim: Claim, give_up: GiveUp | None = None, *, refuse: str | None = None
    ) -> asyncio.Task[Answer | None]:
        """Hand a claim (holding a slot) to the pipeline, as a task of its own. It counts
        towards the daily limit from now on, unless it is `refuse`d."""
        if refuse is None:
            self.limit.claimed(self.server, claim.run_id)
        run = self.pipeline.run(claim, self._slots.release, give_up or self._give_up, refuse=refuse)
        task = asyncio.create_task(run, name=f"run-{claim.run_id}")
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Answer | None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a run's task failed", task=task.get_name(), exc_info=task.exception())

    def _runs_changed(self) -> None:
        active = self.pipeline.active
        self.status.running = {run_id: run.name for run_id, run in active.items()}
        self.status.lanes = {run_id: run.lane for run_id, run in active.items()}
        self.status.rounds = {run_id: run.round for run_id, run in active.items()}
        if active:
            self._all_finished.clear()
        else:
            self._all_finished.set()
        self._set_status(self._busy_or_idle())

    def _busy_or_idle(self) -> AgentState:
        if self.pipeline.active:
            return AgentState.BUSY
        if self.paused:
            return AgentState.PAUSED
        return AgentState.LIMIT_REACHED if self.limit.reached else AgentState.IDLE

    def _give_up(self, attempts: int) -> bool:
        if self._hurry.is_set():
            return True
        return self._stopping.is_set() and attempts >= DRAIN_ATTEMPTS

    # -------------------------------------------------------------- once

    async def _run_once(self) -> ExitCode:
        give_up = after(ONCE_ATTEMPTS)
        answers = await self.outbox.flush(give_up)
        if self._stopping.is_set():
            return _once_exit_code(None, answers)
        if await self.limit.check() is not None:  # said in the log, once
            self._set_status(AgentState.LIMIT_REACHED, _limit_detail(self.limit.reached))
            return _once_exit_code(None, answers)
        await self._slots.acquire()
        poll = await self._poll_request()
        if poll.kind is AnswerKind.AUTH and await self.tokens.refresh():
            poll = await self._poll_request()
        outcome = await self._read_poll(poll)
        if not isinstance(outcome, Claim):
            self._slots.release()
            if poll.kind is AnswerKind.OK and not isinstance(_parsed(poll), Idle):
                return ExitCode.UNREACHABLE  # it answered, but nothing we could use
            return _once_exit_code(poll, answers)
        task = self._start(outcome, give_up)
        await _first_of(asyncio.shield(task), self._stopping.wait())
        if self._stopping.is_set():  # SIGTERM while the run executes: the same drain as `run`
            await self._drain()
        answer = await task
        if answer is not None:
            answers.append(answer)
        return _once_exit_code(poll, answers)

    async def _poll_request(self, *, wait_seconds: int = 0, at_limit: bool = False) -> Answer:
        body = poll_body(
            worker_id=self.worker_id,
            app_version=__version__,
            label=self.settings.label,
            agent_kinds=await self.agent_kinds.current(),
            capacity_available=self._capacity(),
            wait_seconds=wait_seconds,
            platform=self.platform,
            at_limit=at_limit,
        )
        return await self.client.poll(body)

    async def _held_poll(self, *, at_limit: bool = False) -> Answer | None:
        """A poll the server may hold up to `wait_seconds` (docs/protocol.md, "Long-poll");
        None when it was given up on at a stop. The poll holds a slot, so the device has
        room for what it may be handed.

        Nothing cuts it short lightly: the server wakes a held poll itself when a run is
        queued, and may already have claimed the new run into this very answer — dropping
        the answer would strand that run, claimed and never heartbeated, for hours. So
        "Run now" leaves it alone, and a stop waits for it up to the drain grace (the
        claim is then reported as not started); only the grace running out or a second
        stop request abandons it."""
        request = asyncio.ensure_future(
            self._poll_request(wait_seconds=self.settings.wait_seconds, at_limit=at_limit)
        )
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({request, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not request.done():
            log.info(
                "stopping: waiting for the poll in flight, which the server may still hand "
                "a run (reported as not started)",
                grace_seconds=round(self._grace_left(), 1),
            )
            hurry = asyncio.ensure_future(self._hurry.wait())
            try:
                await asyncio.wait(
                    {request, hurry},
                    timeout=self._grace_left(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                hurry.cancel()
        if request.done():
            return request.result()
        request.cancel()
        await asyncio.gather(request, return_exceptions=True)
        log.warning(
            "stopping without the poll's answer; a run the server claims into that poll is "
            "not received here and shows as running on the server until the server reaps it "
            "(up to about 2 hours)"
        )
        await self._note_abandoned_poll("the agent stopped before the server answered it")
        return None

    async def _note_abandoned_poll(self, reason: str) -> None:
        """A poll given up on before its answer, which the server may have claimed a run
        into: noted in the journal, where `status` finds it (after the agent has stopped
        too)."""
        await self.journal.write_or_defer(
            self.journal.sync.note_abandoned_poll, self.server, reason
        )

    def _grace_left(self) -> float:
        """Seconds left of the drain grace that began with the stop request."""
        if self._stop_deadline is None:
            return self.settings.shutdown_grace_seconds
        return max(0.0, self._stop_deadline - time.monotonic())

    def _capacity(self) -> int:
        """Free slots, counting the one this poll holds."""
        return max(1, self.settings.concurrency - len(self.pipeline.active))

    # ------------------------------------------------------------- drain

    async def _drain(self) -> None:
        self._set_status(AgentState.STOPPING)
        if self.pipeline.active:
            log.info(
                "waiting for running runs",
                runs=sorted(self.pipeline.active),
                grace_seconds=round(self._grace_left(), 1),
            )
            await _first_of(
                asyncio.sleep(self._grace_left()),
                self._hurry.wait(),
                self._all_finished.wait(),
            )
        for run_id, run in list(self.pipeline.active.items()):
            log.warning("run did not finish within the grace period; cancelling it", run_id=run_id)
            run.cancel.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.journal.problem is not None and not await self.journal.writable_again():
            log.error(
                "stopping with results the journal could not record (those delivered are on "
                "the server); the next start reports their runs as interrupted",
                error=self.journal.problem,
            )

    def _set_status(self, state: AgentState, detail: str = "") -> None:
        if state is AgentState.LIMIT_REACHED and not detail:
            detail = _limit_detail(self.limit.reached)
        self.status.state = state
        self.status.detail = detail
        if state in PROBLEM_STATES:
            self.status.last_error = detail
        if self._on_status is not None:
            self._on_status(self.status)


# ---------------------------------------------------------------- helpers


def _limit_detail(reached: Reached | None) -> str:
    if reached is None:
        return ""
    return f"{reached.message} — `device-agent resume --past-limit` to go on today"


def _parsed(answer: Answer) -> Claim | Idle | None:
    try:
        return parse_poll(answer.body)
    except PayloadError:
        return None


def _error_code(answer: Answer) -> str | None:
    code = answer.body.get("error") if isinstance(answer.body, dict) else None
    return code if isinstance(code, str) else None


def _server_text(answer: Answer) -> str | None:
    text = answer.body.get("error_description") if isinstance(answer.body, dict) else None
    return text if isinstance(text, str) and text else None


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def _once_exit_code(poll: Answer | None, answers: list[Answer]) -> ExitCode:
    kinds = [*([poll.kind] if poll else []), *(a.kind for a in answers)]
    if AnswerKind.AUTH in kinds:
        return ExitCode.AUTH
    if AnswerKind.TRANSIENT in kinds:
        return ExitCode.UNREACHABLE
    if poll is not None and poll.kind is AnswerKind.REJECTED:
        return ExitCode.CONFIG
    if any(a.kind is AnswerKind.REJECTED for a in answers):
        return ExitCode.INTERNAL
    return ExitCode.OK


async def _first_of(*aws: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _unreadable_claim(answer: Answer) -> Claim | None:
    """The run a 200 poll answer too large to read was handing over (its first bytes name
    it), to be reported failed and never run; None for any other failed poll."""
    if answer.status != 200 or not answer.refused_head:
        return None
    why = (
        f"not run: the server handed this run over in an answer larger than the "
        f"{POLL_BODY_CAP // (1024 * 1024)} MiB device-agent reads ({answer.message}); "
        "make what the run carries smaller (a chat message, an automation's input) and "
        "run it again"
    )
    claim = claim_in_head(answer.refused_head, why)
    if claim is not None:
        log.error(
            "the server handed over a run too large to read; reporting it failed",
            run_id=claim.run_id,
            run_type=claim.run_type,
            answer=answer.describe(),
        )
    return claim
