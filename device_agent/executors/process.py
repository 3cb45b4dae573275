"""Run a command as the leader of its own process group, read its output under caps,
and make sure no process of the group outlives the run.

The only module that starts and signals processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psutil

from device_agent.agent.result import TRUNCATED
from device_agent.logs import get_logger
from device_agent.umask import users_umask

logger = get_logger(__name__)

_READ_CHUNK: Final = 256 * 1024
_TAIL_BYTES: Final = 4096  # the end of each stream is kept even past the cap, for error text
_POLL_SECONDS: Final = 0.02
_REAP_SECONDS: Final = 2.0  # after SIGKILL, how long the group may take to vanish
_PIPE_SECONDS: Final = 2.0  # after the group is gone, how long a pipe may stay open


class LineFilter:
    """Drops the lines of a stream that start with one of `prefixes`, as the stream flows:
    a line is held back only until its first bytes say whether it is kept."""

    def __init__(self, prefixes: Sequence[bytes]) -> None:
        self._prefixes = tuple(prefixes)
        self._longest = max((len(p) for p in self._prefixes), default=0)
        self._start = b""  # the start of a line not decided yet
        self._keep: bool | None = None  # None: at the start of a line, undecided

    def feed(self, chunk: bytes) -> bytes:
        kept = bytearray()
        at = 0
        while at < len(chunk):
            newline = chunk.find(b"\n", at)
            line_end = len(chunk) if newline < 0 else newline + 1
            if self._keep is None:
                room = self._longest - len(self._start)
                piece = chunk[at : min(line_end, at + room)]
                self._start += piece
                at += len(piece)
                keep = self._decision()
                if keep is None:
                    continue
                if keep:
                    kept += self._start
                # A line decided by its end (a short one) leaves the next one undecided.
                self._keep = None if self._start.endswith(b"\n") else keep
                self._start = b""
                continue
            if self._keep:
                kept += chunk[at:line_end]
            at = line_end
            if newline >= 0:
                self._keep = None
        return bytes(kept)

    def flush(self) -> bytes:
        """What is held back once the stream has ended: a last line too short to decide."""
        held, self._start, self._keep = self._start, b"", None
        return b"" if any(held.startswith(p) for p in self._prefixes) else held

    def _decision(self) -> bool | None:
        """Whether the line begun with `self._start` is kept; None: too early to say."""
        start = self._start
        if any(start.startswith(p) for p in self._prefixes):
            return False
        if (
            start.endswith(b"\n")
            or len(start) >= self._longest
            or not any(p.startswith(start) for p in self._prefixes)
        ):
            return True
        return None


class Capped:
    """The first `cap` bytes of a stream and its last few; the rest is read and dropped.

    Draining past the cap keeps the child from blocking on a full pipe, and
    dropping keeps a CLI that prints 100 MB from growing our memory. Lines starting with
    one of `skip` are dropped before they count (`[output] skip_lines` of a profile).
    """

    def __init__(self, cap: int, skip: Sequence[bytes] = ()) -> None:
        self.cap = cap
        self.head = bytearray()
        self.end = b""
        self.total = 0
        self._filter = LineFilter(skip) if skip else None

    async def drain(
        self, stream: asyncio.StreamReader, on_chunk: Callable[[bytes], None] | None = None
    ) -> None:
        while chunk := await stream.read(_READ_CHUNK):
            if on_chunk is not None:  # e.g. the RunBoard's output tail for `status`
                on_chunk(chunk[-_TAIL_BYTES:])
            self._keep(self._filter.feed(chunk) if self._filter is not None else chunk)
        if self._filter is not None:
            self._keep(self._filter.flush())

    def _keep(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.total += len(chunk)
        room = self.cap - len(self.head)
        if room > 0:
            self.head += chunk[:room]
        self.end = (self.end + chunk[-_TAIL_BYTES:])[-_TAIL_BYTES:]

    @property
    def truncated(self) -> bool:
        return self.total > self.cap

    def text(self) -> str:
        text = self.head.decode("utf-8", errors="replace")
        if self.truncated:
            text += f"\n{TRUNCATED}"  # in place: CPython grows a string nothing else holds
        return text

    def last(self) -> str:
        return self.end.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Finished:
    returncode: int | None
    stopped_by: str | None  # "timeout" or "cancelled" when we ended it, else None
    stdout: Capped
    stderr: Capped


def wait_for_children_with_pidfd() -> bool:
    """Have asyncio learn of a CLI's exit from a pidfd in the event loop (Linux).

    Python 3.11 otherwise starts a thread per child just to block in waitpid; 3.12 and
    later pick the pidfd watcher themselves. Call before the loop starts. True if in use.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # a kernel before 5.3, or a sandbox that forbids it: keep the default
        return False
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    return True


async def run_in_group(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | None,
    stdin: bytes | None,
    time_limit: float,
    cancel: asyncio.Event | None,
    grace: float,
    stdout_cap: int,
    stderr_cap: int,
    on_stdout: Callable[[bytes], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    stdout_skip: Sequence[bytes] = (),
) -> Finished:
    """Run `argv` as the leader of a new process group; no process of the group outlives this.
    `on_start` is told the leader's pid once it runs; stdout lines starting with one of
    `stdout_skip` are not kept."""
    process = await _spawn(
        argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        cwd=cwd,
        env=dict(env),
    )
    group = process.pid
    if on_start is not None:
        on_start(group)
    stdout, stderr = Capped(stdout_cap, stdout_skip), Capped(stderr_cap)
    assert process.stdout is not None
    assert process.stderr is not None
    helpers = [
        asyncio.create_task(stdout.drain(process.stdout, on_stdout)),
        asyncio.create_task(stderr.drain(process.stderr)),
    ]
    if stdin is not None:
        assert process.stdin is not None
        helpers.append(asyncio.create_task(_feed(process.stdin, stdin)))
    try:
        stopped_by = await _wait(process, time_limit, cancel)
        await stop_group(group, grace)  # after a normal exit too: leftovers die with the run
        await _reap(process, helpers)
    except BaseException:
        signal_group(group, signal.SIGKILL)  # our caller is going away: no time for grace
        await _reap(process, helpers)
        raise
    finally:
        for task in helpers:
            task.cancel()
    return Finished(process.returncode, stopped_by, stdout, stderr)


async def _wait(process: _Process, time_limit: float, cancel: asyncio.Event | None) -> str | None:
    """None when the leader exited by itself, else "timeout" or "cancelled"."""
    exited = asyncio.ensure_future(_exit_status(process))
    cancelled = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
    waiters: set[asyncio.Future[Any]] = {exited} if cancelled is None else {exited, cancelled}
    try:
        await asyncio.wait(waiters, timeout=time_limit, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()  # a no-op for the finished one
    if exited.done() and not exited.cancelled():
        return None
    return "cancelled" if cancelled is not None and cancelled.done() else "timeout"


class _ExitNotifying(asyncio.subprocess.SubprocessStreamProtocol):
    """The stream protocol of `create_subprocess_exec`, plus a future set when the leader exits.

    `process.wait()` also waits until every holder of the pipes has closed
    them, and a grandchild left in the background may hold them forever; this
    future is set by the child watcher the moment the leader is reaped, so the
    end of a run is noticed without polling.
    """

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


class _Process(asyncio.subprocess.Process):
    exited: asyncio.Future[None]  # set when the leader is reaped, pipes open or not


async def _spawn(
    argv: Sequence[str], *, stdin: int, cwd: Path | None, env: dict[str, str]
) -> _Process:
    """What `asyncio.create_subprocess_exec` does, with the exit-notifying protocol."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _ExitNotifying(_READ_CHUNK, loop),
        *argv,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,  # a session of its own: its pid is the group id we signal
        umask=users_umask(),  # the CLI writes the user's files as the user would
    )
    process = _Process(transport, protocol, loop)
    process.exited = protocol.exited
    return process


async def _exit_status(process: _Process) -> int:
    """The leader's exit status, as soon as it is reaped (see `_ExitNotifying`)."""
    await asyncio.shield(process.exited)  # a cancelled waiter must not cancel the future
    assert process.returncode is not None
    return process.returncode


async def stop_group(group: int, grace: float) -> None:
    """SIGTERM the group, give it `grace` seconds, SIGKILL whatever is left, and wait for it."""
    if not signal_group(group, signal.SIGTERM):
        return
    if await _vanished(group, grace):
        return
    signal_group(group, signal.SIGKILL)
    if not await _vanished(group, _REAP_SECONDS):
        logger.warning("process group still present after SIGKILL", group=group)


async def _vanished(group: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while await asyncio.to_thread(group_alive, group):  # it lists every process: off the loop
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL_SECONDS)
    return True


def group_alive(group: int) -> bool:
    """Whether a process of the group still runs.

    A zombie does not count: an orphan waits for init to reap it, and some
    inits reap late (every few seconds in some VMs) or never (a container
    whose PID 1 is not an init).
    """
    if not signal_group(group, 0):
        return False
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) != group:
                continue
        except (ProcessLookupError, PermissionError):  # gone, or no group we may know of
            continue
        try:
            if process.status() not in _NOT_RUNNING:
                return True
        except psutil.NoSuchProcess:  # gone meanwhile (ZombieProcess is one of these)
            continue
        except psutil.AccessDenied:  # a member we may not ask: it may run, the group is not gone
            return True
    return False


_NOT_RUNNING: Final = frozenset({psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD})


def signal_group(group: int, signum: int) -> bool:
    """Send `signum` (0: just probe) to the group; False when nothing of it is left."""
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # macOS answers EPERM for a group of zombies
        return False
    return True


async def _feed(pipe: asyncio.StreamWriter, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        pipe.write(data)
        await pipe.drain()
    pipe.close()  # end of file: the prompt is complete
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await pipe.wait_closed()


async def _reap(process: _Process, helpers: list[asyncio.Task[None]]) -> None:
    """Once the group is dead: the leader's status, and the pipes read to end of file.

    Both are bounded. A pipe that a process which left the group still holds
    is abandoned rather than waited for.
    """
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_exit_status(process), _REAP_SECONDS)
    _, pending = await asyncio.wait(helpers, timeout=_PIPE_SECONDS)
    if pending:
        logger.warning(
            "output pipe still open after the process group ended; "
            "a process of the run left its group"
        )


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
