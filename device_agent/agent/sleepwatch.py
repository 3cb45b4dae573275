"""Notice when the machine slept: the wall clock jumped but the monotonic clock did not.

On Linux and macOS the monotonic clock (what asyncio sleeps on) stops while
the machine is suspended, so after a laptop lid opens every timer simply
resumes — the agent would wait out its old backoff while its leases expired.
Comparing the two clocks tells us that time passed that we did not see.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def wall(self) -> float: ...
    def monotonic(self) -> float: ...


@dataclass(frozen=True)
class SystemClock:
    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


async def watch_for_sleep(
    on_wake: Callable[[float], None],
    *,
    interval: float = 5.0,
    threshold: float = 30.0,
    clock: Clock | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Call `on_wake(seconds_missed)` whenever wall time outran monotonic time by > threshold."""
    clock = clock or SystemClock()
    wall, mono = clock.wall(), clock.monotonic()
    while True:
        await sleep(interval)
        new_wall, new_mono = clock.wall(), clock.monotonic()
        missed = (new_wall - wall) - (new_mono - mono)
        wall, mono = new_wall, new_mono
        if missed > threshold:
            on_wake(missed)
