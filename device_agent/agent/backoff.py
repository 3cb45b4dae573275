"""The one retry policy, for polling and for delivering results alike.

Exponential backoff with *equal* jitter: after the n-th failure in a row the
delay is drawn from [c/2, c] where c = min(cap, base * 2**(n-1)), so a fleet
of devices spreads out yet none retries at once. A server's Retry-After is
honoured as a floor, up to the cap: a server asking for more than the owner's
`max_backoff_seconds` gets that, no longer. `reset` after a success.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self, *, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None
    ) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()

    def next(self, retry_after: float | None = None) -> float:
        """Seconds to wait after one more failure."""
        self.failures += 1
        ceiling = min(self.cap, self.base * 2 ** min(self.failures - 1, 30))
        delay = self._rng.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        return delay

    def reset(self) -> None:
        self.failures = 0


def jittered(seconds: float, rng: random.Random | None = None) -> float:
    """Spread a fixed interval by up to +10% so a fleet of devices does not poll in lockstep."""
    return seconds * (1.0 + (rng or random).uniform(0.0, 0.1))
