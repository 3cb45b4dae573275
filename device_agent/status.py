"""What the agent is doing, as `device-agent status` (and later a tray) shows it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class AgentState(enum.StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    BACKING_OFF = "backing_off"
    AUTH_NEEDED = "auth_needed"
    REJECTED = "rejected"
    JOURNAL_UNWRITABLE = "journal_unwritable"  # no new runs until it can be written
    STOPPING = "stopping"
    STOPPED = "stopped"


PROBLEM_STATES = frozenset(
    {
        AgentState.BACKING_OFF,
        AgentState.AUTH_NEEDED,
        AgentState.REJECTED,
        AgentState.JOURNAL_UNWRITABLE,
    }
)


@dataclass
class Status:
    """Updated as the agent works; published to the status file on every visible change."""

    state: AgentState = AgentState.STARTING
    detail: str = ""
    running: dict[int, str] = field(default_factory=dict)  # run_id -> watcher name
    last_poll_at: float | None = None
    last_error: str | None = None
    woke_at: float | None = None
