"""One agent per home: an advisory lock the OS drops when the holder dies, so it is never stale."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from device_agent.errors import DeviceAgentError, ExitCode


class AlreadyRunning(DeviceAgentError):
    exit_code = ExitCode.CONFIG

    def __init__(self, path: Path, pid: str) -> None:
        who = f"PID {pid}" if pid else "another process"
        super().__init__(
            f"another device-agent ({who}) is already running for this home (lock {path}): "
            "stop it first, or set DEVICE_AGENT_HOME to run a second, separate agent"
        )


class LockUnusable(DeviceAgentError):
    exit_code = ExitCode.CONFIG

    def __init__(self, path: Path, exc: OSError) -> None:
        super().__init__(
            f"cannot open the lock {path} ({exc.strerror}; a symlink is refused): "
            "remove it and start again"
        )


class InstanceLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            # O_NOFOLLOW: a symlink planted here must not get its target truncated.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise LockUnusable(self.path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise AlreadyRunning(self.path, holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays for the next holder
            self._fd = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def holder_pid(path: Path) -> int | None:
    """The PID of the agent holding the lock, or None when no agent holds it.

    Asking the lock, not a PID file alone, means a stale PID that the OS has
    since given to another program is never mistaken for a running agent.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
