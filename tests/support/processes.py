"""Whether a process, or any process of a group, is still alive."""

from __future__ import annotations

import os
from pathlib import Path

from device_agent.executors.process import read_proc_stat


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = read_proc_stat(pid)
    if stat is None:
        return Path("/proc").is_dir() is False  # no /proc here: the signal check is all we have
    return stat.state not in ("Z", "X")


def live_members(group: int) -> list[int]:
    """Processes of `group` that are alive (zombies waiting for their reaper do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: fall back to "does the group exist at all"
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return []
        return [group]
    members = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            stat = read_proc_stat(entry.name)
            if stat is not None and stat.pgrp == group and stat.state not in ("Z", "X"):
                members.append(int(entry.name))
    return members
