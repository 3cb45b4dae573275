"""What the agent is doing now and what it has run: the data behind `status` and "Run now".

The dispatcher tells a `RunBoard` when a run starts, prints and finishes; the
control socket's `status` and `targets` answers read it. Everything here is
bounded (the output tail, the number of targets remembered), so a chatty CLI
or a server pinning thousands of watchers cannot grow it without limit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from device_agent.cli.output import plain
from device_agent.desktop.control_client import Target
from device_agent.lanes.routes import TRIGGER_ROUTES

TAIL_CHARS: Final = 2000
MAX_TARGETS: Final = 200


@dataclass
class _Running:
    run_id: int
    target: Target
    started: float
    tail: str = ""


class RunBoard:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        tail_chars: int = TAIL_CHARS,
        max_targets: int = MAX_TARGETS,
    ) -> None:
        self.clock = clock
        self.tail_chars = tail_chars
        self.max_targets = max_targets
        self._running: dict[int, _Running] = {}
        self._targets: OrderedDict[tuple[str, str], Target] = OrderedDict()

    def started(self, run_id: int, target: Target) -> None:
        self._running[run_id] = _Running(run_id, target, self.clock())
        self.remember(target)

    def output(self, run_id: int, text: str) -> None:
        """Add what the run's CLI printed; only the last `tail_chars` are kept."""
        running = self._running.get(run_id)
        if running is not None:
            running.tail = (running.tail + plain(text))[-self.tail_chars :]

    def finished(self, run_id: int) -> None:
        self._running.pop(run_id, None)

    def remember(self, target: Target) -> None:
        """A target this device has run (also from the journal at start-up), newest first.
        Only a lane with a "Run now" has targets: a chat turn is not one."""
        if target.lane not in TRIGGER_ROUTES:
            return
        key = (target.lane, target.id)
        self._targets.pop(key, None)
        self._targets[key] = target
        while len(self._targets) > self.max_targets:
            self._targets.popitem(last=False)

    def runs(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [
            {
                "run_id": running.run_id,
                "lane": running.target.lane,
                "target_id": running.target.id,
                "name": running.target.name,
                "elapsed_seconds": round(max(0.0, now - running.started), 1),
                "output_tail": running.tail,
            }
            for running in self._running.values()
        ]

    def targets(self) -> list[Target]:
        return list(reversed(self._targets.values()))
