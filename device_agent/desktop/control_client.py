"""Talk to a running agent over its control socket: the wire format and a synchronous client.

The CLI (`status`, `trigger`, `pause`, `resume [--past-limit]`) and the tray use this module;
the daemon's side is `device_agent.desktop.control`. It imports no asyncio so a
short command starts fast.

The wire format: the client sends one line of JSON, the server answers with
one line of JSON and closes the connection.

    -> {"v": 1, "op": "trigger", "target_id": "12", "lane": "watcher"}
    <- {"v": 1, "ok": true, "result": {...}}
    <- {"v": 1, "ok": false, "error": "unknown op 'x': use one of ..."}
    <- {"v": 1, "ok": false, "error": "...", "exit_code": 3}

`exit_code` rides along when the refusal is a verdict the command should end with
(the server refused "Run now"; no token), as it would had it asked the server itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

SCHEMA_VERSION: Final = 1
STATUS_SCHEMA_VERSION: Final = 1  # of the `status` answer's keys (and `status --json`'s)
MAX_LINE_BYTES: Final = 64 * 1024  # a request or an answer longer than this is refused
OPS: Final = ("status", "poll_now", "pause", "resume", "resume_past_limit", "targets", "trigger")
LANES: Final = ("watcher", "automation")
POKED: Final = "asked the running agent to poll now"  # what `trigger` says after a poke
SOCKET_NAME: Final = "control.sock"
# sun_path is 104 bytes on macOS and the BSDs, 108 on Linux, both counting the final NUL.
SUN_PATH_MAX: Final = 104 if sys.platform == "darwin" else 108


class ControlError(Exception):
    """The daemon refused a request, or its answer made no sense. The message says which."""


class Refusal(ControlError):
    """The daemon answered with a verdict: `reason` is its message, `exit_code` the exit code
    the command ends with (None when the daemon gave none)."""

    def __init__(self, op: str, reason: str, exit_code: int | None) -> None:
        super().__init__(f"the daemon refused {op!r}: {reason}")
        self.reason = reason
        self.exit_code = exit_code


class DaemonNotRunning(ControlError):
    """Nothing listens on the control socket."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"the device-agent daemon is not running (no answer on {path}): "
            "start it with `device-agent run` or `device-agent service start`"
        )
        self.path = path


@dataclass(frozen=True)
class Target:
    """A watcher or automation this device has run: what "Run now" can name."""

    id: str
    lane: str  # "watcher" or "automation"
    name: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "lane": self.lane, "name": self.name}

    @classmethod
    def from_dict(cls, data: Any) -> Target:
        if not isinstance(data, dict):
            raise ControlError(f"a target must be an object, got {type(data).__name__}")
        id_, lane, name = (data.get(key) for key in ("id", "lane", "name"))
        if not (isinstance(id_, str) and isinstance(lane, str) and isinstance(name, str)):
            raise ControlError(f"a target needs string id, lane and name, got {data!r:.200}")
        return cls(id_, lane, name)


def socket_path(state_dir: Path) -> Path:
    """Where the control socket of the agent with this state dir lives.

    `<state dir>/control.sock` when that fits in sun_path; otherwise (a deep
    DEVICE_AGENT_HOME) a socket in a per-user 0700 folder of the temp dir,
    named after the state dir so two agents never share one.
    """
    preferred = state_dir / SOCKET_NAME
    if len(os.fsencode(preferred)) < SUN_PATH_MAX:
        return preferred
    digest = hashlib.sha256(os.fsencode(state_dir.absolute())).hexdigest()[:16]
    return private_temp_dir() / f"{digest}.sock"


def private_temp_dir() -> Path:
    """A temp folder only this user can enter; refuse one someone else prepared."""
    directory = Path(tempfile.gettempdir()) / f"device-agent-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ControlError(
            f"{directory} is not a private folder of yours (owner, mode or type is wrong): "
            "remove it, or set DEVICE_AGENT_HOME to a shorter path"
        )
    return directory


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


def request(path: Path, op: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
    """Send one request and return the daemon's `result`.

    Raises `DaemonNotRunning` when nothing listens, `ControlError` when the
    daemon refused the request or did not answer within `timeout` seconds.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise DaemonNotRunning(path) from None
        except OSError as exc:
            raise ControlError(f"cannot connect to {path}: {exc.strerror}") from None
        try:
            sock.sendall(encode({"v": SCHEMA_VERSION, "op": op, **args}))
            line = _read_line(sock)
        except TimeoutError:
            raise ControlError(
                f"the daemon did not answer {op!r} within {timeout:g} s: it may be stuck; "
                "see `device-agent logs`"
            ) from None
        except OSError as exc:
            raise ControlError(f"lost the connection to the daemon: {exc.strerror}") from None
    return _result(op, line)


def _read_line(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(8192)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if b"\n" in chunk or size > MAX_LINE_BYTES:
            break
    return b"".join(chunks).split(b"\n", 1)[0]


def _result(op: str, line: bytes) -> dict[str, Any]:
    if not line:
        raise ControlError(f"the daemon closed the connection without answering {op!r}")
    try:
        answer = json.loads(line)
    except ValueError:
        raise ControlError(f"the daemon's answer to {op!r} is not JSON") from None
    if not isinstance(answer, dict) or answer.get("v") != SCHEMA_VERSION:
        raise ControlError(
            f"the daemon speaks another control protocol version ({answer!r:.80}): "
            "restart it after upgrading device-agent"
        )
    if not answer.get("ok"):
        exit_code = answer.get("exit_code")
        if not isinstance(exit_code, int) or isinstance(exit_code, bool):
            exit_code = None
        raise Refusal(op, str(answer.get("error")), exit_code)
    result = answer.get("result")
    return result if isinstance(result, dict) else {}
