"""Recovery after a killed agent: the CLIs it left running and the files it could not delete.

Every child carries `RUN_MARKER` in its environment, so the next agent for the
same home finds them without trusting a PID that may have been reused. psutil
reads each process's environment as a mapping, so a state dir with a space in
its path (macOS: `~/Library/Application Support/device-agent`) is matched whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path
from typing import Final

import psutil

from device_agent.executors.process import stop_group
from device_agent.logs import get_logger

logger = get_logger(__name__)

RUN_MARKER: Final = "DEVICE_AGENT_RUN"
OUTSIDE_NOTE: Final = "outside-file-"  # scratch-dir notes naming token files written elsewhere


async def recover_leftovers(scratch_dir: Path, *, grace: float) -> int:
    """Stop the CLIs a killed agent left running and delete the files it could not (a per-run
    MCP config holds the token). Call only while holding the single-instance lock. Returns the
    number of process groups stopped."""
    groups = await asyncio.to_thread(groups_with_marker, f"{scratch_dir}{os.sep}")
    for group in groups:
        logger.warning("stopping a CLI left running by a killed agent", group=group)
        await stop_group(group, grace)
    await asyncio.to_thread(_remove_leftovers, scratch_dir)
    return len(groups)


def _remove_leftovers(scratch_dir: Path) -> None:
    if not scratch_dir.is_dir():
        return
    for note in scratch_dir.glob(f"{OUTSIDE_NOTE}*"):
        with contextlib.suppress(OSError):
            Path(note.read_text(encoding="utf-8")).unlink(missing_ok=True)
    for leftover in scratch_dir.iterdir():
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def groups_with_marker(prefix: str) -> set[int]:
    """Process groups of this user's processes whose `RUN_MARKER` value starts with `prefix`
    (the scratch dir and a separator), our own group excepted.

    A process that cannot be asked is skipped, each case for its own reason: one that
    exited meanwhile or is a zombie has nothing left to stop (its group's live members are
    found on their own); another user's process cannot be one of our CLIs, which run as us;
    one of ours whose environment the OS will not show (AccessDenied: hardened or setuid)
    is counted and logged, since it might be an orphan we cannot see.
    """
    me = os.getuid()
    own_group = os.getpgid(0)
    groups: set[int] = set()
    unreadable = 0
    for process in psutil.process_iter():
        try:
            ours = process.uids().real == me
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # gone, or not ours to ask about
            continue
        if not ours:
            continue
        try:
            value = process.environ().get(RUN_MARKER)
            if value is None or not value.startswith(prefix):
                continue
            groups.add(os.getpgid(process.pid))
        except (psutil.NoSuchProcess, ProcessLookupError):  # ZombieProcess is one of these
            continue
        except (psutil.AccessDenied, PermissionError):
            unreadable += 1
    if unreadable:
        logger.info(
            "could not read the environment of some of our own processes; a CLI left by a "
            "killed agent among them is not stopped",
            processes=unreadable,
        )
    groups.discard(own_group)  # never our own group
    return groups
