"""Fault injection: make the dev server fail on purpose, deterministically or at random.

A fault is looked up once per request, before the request is processed. The
router decides what a kind means on the wire (see `routes.Router`):

- ``status``: answer `status` with a JSON error (and ``Retry-After``) without processing;
- ``drop``: close the connection without answering, without processing;
- ``drop_after_commit``: process the request (state committed), then close without
  answering: the classic lost acknowledgement;
- ``delay``: sleep `seconds`, then process normally;
- ``slow_answer``: process normally (a held poll included), then take `seconds` to answer,
  as a slow network does: the state is committed long before the client sees it;
- ``garbage``: answer 200 with a body that is not JSON.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, get_args

FaultKind = Literal["status", "drop", "drop_after_commit", "delay", "slow_answer", "garbage"]
FaultRoute = Literal["poll", "heartbeat", "complete", "trigger", "transcript", "*"]

FAULT_KINDS: Final = frozenset(get_args(FaultKind))
FAULT_ROUTES: Final = frozenset(get_args(FaultRoute))

# What a flaky proxy or an overloaded server answers; 429 and 503 carry Retry-After.
CHAOS_STATUSES: Final = (500, 502, 503, 429)
_RETRY_AFTER_STATUSES: Final = frozenset({429, 503})


@dataclass(frozen=True)
class Fault:
    """One injected failure. `times` is how many requests it hits (None = forever)."""

    route: str = "*"
    kind: str = "status"
    status: int = 503
    retry_after: float | None = None
    seconds: float = 0.0
    times: int | None = 1
    body: str = "<html>oops</html>"

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}"
            )
        if self.route not in FAULT_ROUTES:
            raise ValueError(
                f"unknown fault route {self.route!r}; expected one of {sorted(FAULT_ROUTES)}"
            )
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1 or None")

    def matches(self, route: str) -> bool:
        return self.route == "*" or self.route == route


@dataclass
class _Armed:
    fault: Fault
    remaining: int | None


@dataclass(frozen=True)
class _Chaos:
    rate: float
    kinds: tuple[str, ...]
    routes: frozenset[str]
    rng: random.Random


class FaultInjector:
    """The faults armed on a server. Thread-safe: tests arm faults from their own thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []
        self._chaos: _Chaos | None = None
        self.injected: Counter[str] = Counter()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._armed.append(_Armed(fault, fault.times))
        return fault

    def chaos(
        self,
        rate: float = 0.2,
        kinds: Iterable[str] = ("status", "drop", "drop_after_commit", "garbage"),
        routes: Iterable[str] = ("poll", "heartbeat", "complete"),
        seed: int | None = None,
    ) -> None:
        """Fail each matching request with probability `rate`, in a random kind."""
        kinds = tuple(kinds)
        for kind in kinds:
            Fault(kind=kind)  # validates the name
        with self._lock:
            self._chaos = _Chaos(rate, kinds, frozenset(routes), random.Random(seed))

    def clear(self) -> None:
        """Disarm every fault and chaos mode (the `injected` counts are kept)."""
        with self._lock:
            self._armed.clear()
            self._chaos = None

    def pick(self, route: str) -> Fault | None:
        """The fault to apply to one request on `route`, if any; counts it as injected."""
        with self._lock:
            fault = self._take_armed(route) or self._roll_chaos(route)
            if fault is not None:
                self.injected[fault.kind] += 1
            return fault

    def _take_armed(self, route: str) -> Fault | None:
        for armed in self._armed:
            if not armed.fault.matches(route):
                continue
            if armed.remaining is not None:
                armed.remaining -= 1
                if armed.remaining == 0:
                    self._armed.remove(armed)
            return armed.fault
        return None

    def _roll_chaos(self, route: str) -> Fault | None:
        chaos = self._chaos
        if chaos is None or not chaos.kinds or route not in chaos.routes:
            return None
        if chaos.rng.random() >= chaos.rate:
            return None
        kind = chaos.rng.choice(chaos.kinds)
        status = chaos.rng.choice(CHAOS_STATUSES)
        retry_after = None
        if status in _RETRY_AFTER_STATUSES:
            retry_after = round(chaos.rng.uniform(0.2, 1.0), 2)
        seconds = round(chaos.rng.uniform(0.05, 0.5), 2)
        return Fault(
            route=route, kind=kind, status=status, retry_after=retry_after, seconds=seconds
        )
