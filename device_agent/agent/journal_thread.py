"""The journal driven from the event loop: `AsyncJournal` runs the synchronous `Journal`
(agent/journal.py) on one dedicated thread, so the loop never waits on an fsync and there
is exactly one writer, and logs what the journal returns of its upkeep and its failures.

The daemon's pipeline, outbox, poll loop and daily limit use it; the short commands
(`status`, `history`, `doctor`) open the `Journal` directly.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from device_agent.agent.journal import Journal, JournalWriteError, Upkeep
from device_agent.logs import get_logger

log = get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class JournalThread:
    """One thread that runs the journal's calls, each result handed back to the event loop
    that asked for it.

    What `run_in_executor` does for one worker, without the executor's bookkeeping of
    futures and threads: every run makes several journal calls, each one a trip to this
    thread and back.

    Calls run in the order they came, but for one thing: an `unhurried` call (marking
    a result delivered) waits while others are queued. It holds up no run, while a
    claim queued behind it holds up the next CLI's start.
    """

    def __init__(self) -> None:
        self._urgent: collections.deque[_Job] = collections.deque()
        self._unhurried: collections.deque[_Job] = collections.deque()
        self._wake: queue.SimpleQueue[bool] = queue.SimpleQueue()  # one per job; False: stop
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="journal", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T], *, unhurried: bool = False) -> asyncio.Future[T]:
        if self._closed:
            raise RuntimeError("the journal is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        (self._unhurried if unhurried else self._urgent).append(_Job(fn, future, loop))
        self._wake.put(True)
        return future

    def close(self) -> None:
        """Run what was submitted, then stop."""
        if not self._closed:
            self._closed = True
            self._wake.put(False)  # after every job's wake-up: all of them run first
            self._thread.join()

    def _serve(self) -> None:
        while self._wake.get():
            job = (self._urgent or self._unhurried).popleft()
            try:
                outcome: tuple[Any, BaseException | None] = (job.fn(), None)
            except BaseException as exc:  # handed to the caller, like any result
                outcome = (None, exc)
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                job.loop.call_soon_threadsafe(_resolve, job.future, *outcome)


@dataclass(frozen=True, slots=True)
class _Job:
    fn: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():  # its caller went away; the write itself was done
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class AsyncJournal:
    """The journal, driven from the event loop on its own single thread."""

    def __init__(self, journal: Journal) -> None:
        self.sync = journal
        self._thread = JournalThread()
        self.problem: str | None = None  # why the journal cannot be written; None: it can
        self._deferred: list[Callable[[], object]] = []

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` on the journal's thread. An `Upkeep` it returns (`settle`,
        `prune`) is logged here, a deferred write's too."""
        unhurried = getattr(fn, "unhurried", False)  # see `journal.unhurried`
        try:
            result = await self._thread.submit(lambda: fn(*args, **kwargs), unhurried=unhurried)
        except JournalWriteError as exc:
            self._failed(exc)
            raise
        if isinstance(result, Upkeep):
            self._tell(result)
        return result

    async def write_or_defer(
        self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T | None:
        """A write that delivering a result can go on without: when the journal cannot take
        it, it is kept (in order) and replayed once the journal can be written again.
        Returns what `fn` returned, or None when the write was deferred."""
        if not self._deferred:
            try:
                return await self.call(fn, *args, **kwargs)
            except JournalWriteError:
                pass
        self._deferred.append(lambda: fn(*args, **kwargs))
        return None

    @property
    def deferring(self) -> bool:
        """Whether writes wait to be replayed: until then, rows may lag what happened."""
        return bool(self._deferred)

    async def writable_again(self) -> bool:
        """Try a write and replay what was deferred; True once the journal is healthy."""
        try:
            await self.call(self.sync.probe_write)
            while self._deferred:
                await self._replay(self._deferred[0])
                self._deferred.pop(0)
        except JournalWriteError:
            return False
        if self.problem is not None:
            log.info("the journal can be written again; taking new runs")
            self.problem = None
        return True

    async def _replay(self, write: Callable[[], object]) -> None:
        """Replay one deferred write. One that can never succeed (its row is gone, the file
        is damaged) is dropped with an error, not kept to fail forever: that would end the
        agent's loop, or hold every later write behind it."""
        try:
            await self.call(write)
        except JournalWriteError:
            raise
        except Exception:
            log.exception("a journal write kept while the disk was full cannot be replayed")

    def _tell(self, upkeep: Upkeep) -> None:
        if upkeep.compacted is not None:
            before, after = upkeep.compacted
            log.info("journal compacted", bytes_before=before, bytes_after=after)
        if upkeep.failed is not None:
            log.warning(upkeep.failed, error=upkeep.error, journal=str(self.sync.path))

    def _failed(self, exc: JournalWriteError) -> None:
        if self.problem is None:  # said once, when it starts; not a traceback per write
            log.error("the journal cannot be written", error=str(exc))
        self.problem = str(exc)

    def close(self) -> None:
        self._thread.close()
        self.sync.close()
