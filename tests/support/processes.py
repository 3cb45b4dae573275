"""Whether a process, or any process of a group, is still alive."""

from __future__ import annotations

import os

import psutil


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
