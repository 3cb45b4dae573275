"""What the agent is doing, as `device-agent status` (and later a tray) shows it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class AgentState(enum.StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    PAUSED = "paused"  # by `device-agent pause`: no new claims
    BACKING_OFF = "backing_off"
    AUTH_NEEDED = "auth_needed"
    REJECTED = "rejected"
    JOURNAL_UNWRITABLE = "journal_unwritable"  # no new runs until it can be written
    LIMIT_REACHED = "limit_reached"  # the owner's daily limit: no new runs until the day turns
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
    """Updated as the agent works; read by the control socket's `status` and told to systemd."""

    state: AgentState = AgentState.STARTING
    detail: str = ""
    running: dict[int, str] = field(default_factory=dict)  # run_id -> watcher/automation name
    lanes: dict[int, str] = field(default_factory=dict)  # run_id -> its lane ("automation")
    rounds: dict[int, int] = field(default_factory=dict)  # run_id -> round now running, from 1
    max_rounds: int = 1  # the M of "round N of M"
    upgrade_required: str | None = None  # the server's words while it refuses this version
    last_poll_at: float | None = None
    last_error: str | None = None
    woke_at: float | None = None
