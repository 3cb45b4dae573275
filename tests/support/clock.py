"""A clock for code that takes its time from a callable or a `Clock` (wall and monotonic)."""

from __future__ import annotations

from datetime import UTC, datetime

T0 = datetime(2025, 6, 15, 12, 30, tzinfo=UTC).timestamp()


class FakeClock:
    """Time that moves only when the test moves it.

    Calling the clock gives the wall time (`now`), for code that takes a `time.time`-like
    callable; `wall()` and `monotonic()` serve code that takes both
    (device_agent.agent.sleepwatch.Clock). `advance` moves both, as time passing does;
    `suspend` moves the wall time alone, as a closed lid does. `sleep` is an async sleep
    that advances the clock instead of waiting, and records each wait in `sleeps`.
    """

    def __init__(self, now: float = T0, *, monotonic: float = 100.0) -> None:
        self.now = now
        self.mono = monotonic
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds

    def suspend(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
