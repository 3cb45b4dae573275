"""Before and after `service install`: would the agent start, and did it get ready.

Before: a `Preflight` (doctor's checks, as the service will see them, run by the CLI) lists
what would keep `device-agent run` from starting under the service manager; install refuses
while there is any, unless forced. After: `wait_until_ready` asks the service manager, for a
bounded time, whether the agent reached READY (systemd: `ActiveState=active` of a
`Type=notify` unit, which the agent's READY=1 brings; launchd: the job runs and the agent
answers on its control socket).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

READY_TIMEOUT_SECONDS: Final = 15.0  # the agent says READY within a second or two
READY_POLL_SECONDS: Final = 0.5
LOG_LINES: Final = 15  # shown when the service did not get ready


@dataclass(frozen=True)
class Preflight:
    """Doctor's findings for the service: `blocking` would keep the agent from starting;
    `warnings` failed too, but the agent starts (and retries, or says what to do)."""

    blocking: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hint: str | None = None  # said with the findings, e.g. that flags do not reach the service


@dataclass(frozen=True)
class Readiness:
    """What the service manager says: ready (True), not coming up (False), or still starting
    (None); `detail` in its words."""

    ready: bool | None
    detail: str


class Watched(Protocol):
    def readiness(self) -> Readiness: ...


@dataclass(frozen=True)
class ReadyWait:
    """How long to wait for READY after an install, and how (tests replace sleep and clock)."""

    timeout: float = READY_TIMEOUT_SECONDS
    interval: float = READY_POLL_SECONDS
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


def wait_until_ready(manager: Watched, wait: ReadyWait) -> Readiness:
    """Ask until the service is ready or clearly is not, at most `wait.timeout` seconds."""
    deadline = wait.clock() + wait.timeout
    while True:
        state = manager.readiness()
        if state.ready is not None or wait.clock() >= deadline:
            return state
        wait.sleep(min(wait.interval, max(0.0, deadline - wait.clock())))
