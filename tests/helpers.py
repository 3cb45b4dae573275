"""What tests share: waiting for a condition with a deadline, and looking at processes.

No test sleeps a fixed time: it waits for what it needs, and fails with a
message naming it when the deadline passes (a deadline is a bound on failure,
never an assertion about speed).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

_STEP = 0.01


def agent_env(home: Path, *, server: str, token: str, worker_id: str) -> dict[str, str]:
    """The environment `device-agent` gets from a user: ours minus any DEVICE_AGENT_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICE_AGENT_")}
    env.update(
        DEVICE_AGENT_HOME=str(home),
        DEVICE_AGENT_SERVER=server,
        DEVICE_AGENT_TOKEN=token,
        DEVICE_AGENT_WORKER_ID=worker_id,
    )
    return env


FAKES = Path(__file__).parent / "fakes"  # one fake of each CLI, shared by all tests


def install_fake(directory: Path, fake: str, name: str | None = None) -> Path:
    """Put fakes/<fake>.py in `directory` as an executable called `name`, run by this Python."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / (name or fake)
    source = (FAKES / f"{fake}.py").read_text(encoding="utf-8")
    target.write_text(f"#!{sys.executable}\n{source}", encoding="utf-8")
    target.chmod(0o755)
    shutil.copy(FAKES / "_report.py", directory / "_report.py")
    return target


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 15.0, what: str = "condition"
) -> Any:
    """Poll `predicate` until it is truthy and return its value; fail after `timeout` s."""
    deadline = _Deadline(timeout, what)
    while not (value := predicate()):
        deadline.check()
        time.sleep(_STEP)
    return value


async def wait_for_async(
    predicate: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition"
) -> Any:
    """`wait_for` inside an event loop: the loop keeps running while we wait."""
    deadline = _Deadline(timeout, what)
    while not (value := predicate()):
        deadline.check()
        await asyncio.sleep(_STEP)
    return value


class _Deadline:
    def __init__(self, timeout: float, what: str) -> None:
        self.at = time.monotonic() + timeout
        self.message = f"timed out after {timeout} s waiting for {what}"

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise AssertionError(self.message)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper does not count)."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:  # ZombieProcess is one
        return False
    except psutil.AccessDenied:  # not ours to ask, but there
        return True


def live_members(group: int) -> list[int]:
    """Processes of `group` that are alive (zombies waiting for their reaper do not count)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == group and alive(process.pid):
                members.append(process.pid)
        except ProcessLookupError:
            continue
    return members
