"""What the agent is doing, as `device-agent status` (and later a tray) shows it."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Final

# A run claimed and never heartbeated is reaped by the server after this long
# (docs/protocol.md, "Poll and claim").
UNHEARD_RUN_REAPED_SECONDS: Final = 2 * 3600


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
    lost_claim: PossiblyLostClaim | None = None  # found at start-up: see `PossiblyLostClaim`

    def notes(self, now: float) -> list[str]:
        """Problems that are not a state of their own, while they still matter."""
        if self.lost_claim is not None and self.lost_claim.matters(now):
            return [self.lost_claim.note()]
        return []


@dataclass(frozen=True)
class PossiblyLostClaim:
    """The last agent stopped without ending a poll the server held (it was killed, or the
    machine went down), and no run was claimed since: the server may have claimed a run into
    that poll's connection after nobody read it (docs/protocol.md, "Poll and claim"). Such a run
    shows as running and blocks "Run now" for its watcher until the server gives up on it."""

    server: str
    since: float  # when the poll was sent, epoch seconds

    @property
    def reaped_by(self) -> float:
        return self.since + UNHEARD_RUN_REAPED_SECONDS

    def matters(self, now: float) -> bool:
        return now < self.reaped_by

    def note(self) -> str:
        held, reaped = _clock_time(self.since), _clock_time(self.reaped_by)
        return (
            f"device-agent stopped without ending the poll it sent to {self.server} at {held} "
            "(it was killed or the machine went down): the server may have handed that poll "
            "a run nobody received. If a run of one of this device's watchers or automations "
            f"shows as running in Lobu since {held}, it is that run: nothing was executed "
            f"here, and the server ends it by about {reaped}; Run now works for it again "
            "after that"
        )


def _clock_time(epoch: float) -> str:
    return time.strftime("%H:%M", time.localtime(epoch))
