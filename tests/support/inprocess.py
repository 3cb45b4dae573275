"""The agent run in this process (device_agent.agent.app.run_agent), for tests that inject
a clock, a poll alarm or a notifier: its settings, and an alarm that records the waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from device_agent.agent.alarm import Alarm
from device_agent.agent.poll_loop import PollLoop
from device_agent.config import Paths, Settings, validate

WORKER = "linux:inprocess"


def settings_for(url: str, token: str | None, home: Path, *, worker_id: str = WORKER) -> Settings:
    """Settings for an agent of `home` polling `url`, running the offline demo agent."""
    return validate(
        Settings(
            server=url,
            token=token,
            worker_id=worker_id,
            default_agent="demo",
            paths=Paths.resolve({"DEVICE_AGENT_HOME": str(home)}),
        )
    )


class RecordedWaits(Alarm):
    """The poll loop's alarm: each wait is recorded instead of slept, `before_each` runs
    first, and after `stop_after` waits the agent is asked to stop."""

    def __init__(self, stop_after: int, before_each: Callable[[], None] = lambda: None) -> None:
        super().__init__()
        self.stop_after = stop_after
        self.before_each = before_each
        self.waits: list[float] = []
        self.agents: list[PollLoop] = []  # pass `started=alarm.agents.append`

    async def sleep(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.before_each()
        if len(self.waits) >= self.stop_after:
            self.agents[0].request_stop()
        await asyncio.sleep(0)
        return False
