"""Owner-only files for the agent; the user's own umask for the CLIs it starts.

The journal (and SQLite's -wal/-shm beside it) and the log hold run output, and
the control socket answers with it: whatever the user's umask, the agent creates
them 0600/0700.
A CLI works in the user's own files, so it gets the umask the user had.
"""

from __future__ import annotations

import os
from typing import Final

PRIVATE: Final = 0o077

_users: int | None = None


def make_private() -> None:
    """Called once at start: from now on, everything the agent creates is owner-only."""
    global _users
    previous = os.umask(PRIVATE)
    if _users is None:
        _users = previous


def users_umask() -> int:
    """The umask to start a CLI with (-1: leave it as it is — make_private never ran)."""
    return -1 if _users is None else _users
