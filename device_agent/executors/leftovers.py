"""Recovery after a killed agent: the CLIs it left running and the files it could not delete.

Every child carries `RUN_MARKER` in its environment, so the next agent for the
same home finds them without trusting a PID that may have been reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from device_agent.executors.process import stop_group
from device_agent.logs import get_logger

logger = get_logger(__name__)

RUN_MARKER: Final = "DEVICE_AGENT_RUN"
OUTSIDE_NOTE: Final = "outside-file-"  # scratch-dir notes naming token files written elsewhere


async def recover_leftovers(scratch_dir: Path, *, grace: float) -> int:
    """Stop the CLIs a killed agent left running and delete the files it could not (a per-run
    MCP config holds the token). Call only while holding the single-instance lock. Returns the
    number of process groups stopped."""
    marker = f"{RUN_MARKER}={scratch_dir}{os.sep}"
    groups = await asyncio.to_thread(_groups_with_marker, marker)
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


def _groups_with_marker(marker: str) -> set[int]:
    """Process groups whose members carry `marker` in their environment."""
    needle = marker.encode()
    groups: set[int] = set()
    for pid, environ in _environments():
        if any(entry.startswith(needle) for entry in environ):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                groups.add(os.getpgid(pid))
    groups.discard(os.getpgid(0))  # never our own group
    return groups


def _environments() -> Iterable[tuple[int, list[bytes]]]:
    """(pid, environment entries) of the processes we may inspect."""
    if os.path.isdir("/proc"):
        for name in os.listdir("/proc"):
            if name.isdigit():
                with contextlib.suppress(OSError):
                    yield int(name), Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
        return
    # macOS and the BSDs: `ps -E` appends each process's environment (own processes only).
    listing = subprocess.run(
        ["ps", "-E", "-ax", "-o", "pid=,command="],  # noqa: S607 - ps from the system PATH
        capture_output=True,
        check=False,
        timeout=10,
    ).stdout
    for line in listing.splitlines():
        pid, _, rest = line.strip().partition(b" ")
        if pid.isdigit():
            yield int(pid), rest.split(b" ")
