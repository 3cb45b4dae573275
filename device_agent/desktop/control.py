"""The daemon's control socket: status, poll now, pause, resume (past the daily limit too),
targets and "Run now".

A Unix-domain socket in the state dir, mode 0600 inside the 0700 state dir,
speaking the one-line JSON protocol of `device_agent.desktop.control_client`. The
socket only ever reaches the user who owns the agent; even so, every request
is checked like input from a stranger: anything malformed, unknown or too
long is refused with an error answer, and a client that connects and says
nothing is cut off after a deadline, so no client can hold up the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol

from device_agent.desktop.control_client import (
    LANES,
    MAX_LINE_BYTES,
    OPS,
    SCHEMA_VERSION,
    ControlError,
    Target,
    encode,
)
from device_agent.logs import get_logger
from device_agent.serving import close_server

log = get_logger(__name__)

MAX_CONNECTIONS: Final = 16  # more at once is a runaway script, not a person
MAX_TARGET_ID: Final = 128


class ControlHandler(Protocol):
    """What the control socket asks of the agent. Only `trigger` may wait (a server call)."""

    def status(self) -> dict[str, Any]:
        """What `status` and the tray show. The keys they read:

        `state` (idle, busy, backing_off, auth_needed, ...), `paused` (bool),
        `runs` (`RunBoard.runs()`: name, elapsed_seconds, output_tail, ...),
        `last_poll_at` (epoch seconds or None), `backlog` (results not yet
        delivered) and `problems` (sentences saying what to do; non-empty
        shows the tray's "needs attention").
        """
        ...

    def poll_now(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def resume_past_limit(self) -> dict[str, Any]:
        """Take runs past the owner's daily limit until the day turns (and resume if paused);
        the answer is the day's usage and limits (`limits.limit_report`)."""
        ...

    def targets(self) -> list[Target]:
        """The watchers and automations this device has run, for "Run now"."""
        ...

    async def trigger(self, target_id: str, lane: str | None) -> dict[str, Any]:
        """Ask the server to queue a run of the target now, then poll at once.

        The watcher and automation lanes each have their own route and errors
        (docs/protocol.md, "Run now"); `lane` is None when the caller does not know.
        """
        ...


class Refused(Exception):
    """A request the server answers with an error, never an exception in the loop.

    `exit_code` is set when the refusal is a verdict a command should end with as if it had
    asked the server itself ("Run now" refused by the server, no token): the client prints
    the message and exits with that code instead of retrying some other way.
    """

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ControlServer:
    """Serve `handler` on `path` until closed. Use as `async with ControlServer(...)`."""

    def __init__(
        self,
        path: Path,
        handler: ControlHandler,
        *,
        read_deadline: float = 5.0,
        trigger_deadline: float = 60.0,
    ) -> None:
        self.path = path
        self.handler = handler
        self.read_deadline = read_deadline
        self.trigger_deadline = trigger_deadline
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        sock = bind_private(self.path)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE_BYTES)
        log.debug("control socket listening", path=str(self.path))

    async def close(self) -> None:
        if self._server is not None:
            await close_server(self._server, self._connections)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            if len(self._connections) > MAX_CONNECTIONS:
                answer = _error("too many control connections at once: try again")
            elif not _same_user(writer):
                answer = _error("this control socket serves only the user who runs the agent")
            else:
                answer = await self._answer(reader)
            writer.write(encode(answer))
            async with asyncio.timeout(self.read_deadline):
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass  # the client went away or stopped reading: nothing left to tell it
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.read_deadline):
                line = await reader.readuntil(b"\n")
            return {"v": SCHEMA_VERSION, "ok": True, "result": await self._dispatch(line)}
        except TimeoutError:
            return _error(f"no complete request within {self.read_deadline:g} s")
        except asyncio.LimitOverrunError:
            return _error(f"request longer than {MAX_LINE_BYTES} bytes")
        except asyncio.IncompleteReadError:
            return _error("the request must end with a newline")
        except Refused as exc:
            return _error(str(exc), exit_code=exc.exit_code)
        except Exception as exc:  # a bug in a handler must not take the socket down
            log.exception("control request failed")
            return _error(f"internal error: {type(exc).__name__}: {exc}")

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        op, args = parse_request(line)
        handler = self.handler
        if op == "status":
            return handler.status()
        if op == "targets":
            return {"targets": [target.as_dict() for target in handler.targets()]}
        if op == "resume_past_limit":
            return handler.resume_past_limit()
        if op == "trigger":
            try:
                async with asyncio.timeout(self.trigger_deadline):
                    return await handler.trigger(args["target_id"], args["lane"])
            except TimeoutError:  # not the read deadline `_answer` speaks of
                raise Refused(
                    f"Run now got no answer from the server within {self.trigger_deadline:g} s; "
                    "the run may still be queued: check `device-agent status` before trying again"
                ) from None
        actions: dict[str, Callable[[], None]] = {
            "poll_now": handler.poll_now,
            "pause": handler.pause,
            "resume": handler.resume,
        }
        actions[op]()
        return {}


def parse_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """The op and its checked arguments, or `Refused` saying what is wrong."""
    try:
        request = json.loads(line)
    except ValueError:
        raise Refused("the request is not JSON") from None
    if not isinstance(request, dict):
        raise Refused("the request must be a JSON object")
    if request.get("v") != SCHEMA_VERSION:
        raise Refused(
            f"unsupported control protocol version {request.get('v')!r}: this agent speaks "
            f"{SCHEMA_VERSION}; use the device-agent that matches the running daemon"
        )
    op = request.get("op")
    if op not in OPS:
        raise Refused(f"unknown op {op!r}: use one of {', '.join(OPS)}")
    allowed = {"v", "op", "target_id", "lane"} if op == "trigger" else {"v", "op"}
    if unexpected := set(request) - allowed:
        raise Refused(f"unexpected fields for {op!r}: {', '.join(sorted(unexpected))}")
    if op != "trigger":
        return op, {}
    target_id = request.get("target_id")
    if not isinstance(target_id, str) or not 0 < len(target_id) <= MAX_TARGET_ID:
        raise Refused(f"trigger needs a target_id string of 1-{MAX_TARGET_ID} characters")
    if not target_id.isprintable():
        raise Refused("target_id must not contain control characters")
    lane = request.get("lane")
    if lane is not None and lane not in LANES:
        raise Refused(f"lane must be one of {', '.join(LANES)} or absent, got {lane!r}")
    return op, {"target_id": target_id, "lane": lane}


def _error(message: str, exit_code: int | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"v": SCHEMA_VERSION, "ok": False, "error": message}
    if exit_code is not None:
        answer["exit_code"] = exit_code
    return answer


# ------------------------------------------------------------------ the socket file


def bind_private(path: Path) -> socket.socket:
    """A listening socket at `path` only its owner can reach.

    Refuses a path that is not ours; removes a stale socket that nothing
    answers on; refuses to take over one a live daemon is listening on.
    """
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        # Nobody can connect before listen(), so tightening the mode here leaves no window.
        os.chmod(path, 0o600)
        sock.listen(MAX_CONNECTIONS)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ControlError(f"cannot listen on the control socket {path}: {exc.strerror}") from None
    return sock


def _clear_stale(path: Path) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
        raise ControlError(
            f"{path} exists and is not a socket of yours: remove it so the agent can create "
            "its control socket there"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink()  # left by an agent that died without cleaning up
        return
    finally:
        probe.close()
    raise ControlError(
        f"another device-agent is already answering on {path}: stop it first, or set "
        "DEVICE_AGENT_HOME to run a second, separate agent"
    )


def _same_user(writer: asyncio.StreamWriter) -> bool:
    """Linux tells us who connected; elsewhere the 0600 socket in a 0700 dir is the guard."""
    if not sys.platform.startswith("linux"):
        return True
    sock = writer.get_extra_info("socket")
    if sock is None:
        return False
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return bool(uid == os.getuid())
