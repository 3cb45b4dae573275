"""The agent run in this process (device_agent.agent.app.run_agent), for tests that inject
a clock, a poll alarm or a notifier: its settings, the agent started as a task of the test's
event loop, and an alarm that records the waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device_agent.agent.alarm import Alarm
from device_agent.agent.app import run_agent
from device_agent.agent.poll_loop import PollLoop
from device_agent.config import Paths, Settings, validate
from device_agent.errors import ExitCode
from tests.support.waiting import wait_for_async

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


async def started_agent(
    settings: Settings, token: str, *, worker_id: str = WORKER, **options: Any
) -> tuple[asyncio.Task[ExitCode], PollLoop]:
    """`run_agent` as a task of the test's event loop, without signal handlers, once its
    poll loop exists; `options` are run_agent's own (a clock, an alarm, ...). The caller
    stops it (`PollLoop.request_stop`) and awaits the task for its exit code."""
    agents: list[PollLoop] = []
    task = asyncio.create_task(
        run_agent(
            settings,
            token=token,
            worker_id=worker_id,
            handle_signals=False,
            started=agents.append,
            **options,
        )
    )
    await wait_for_async(lambda: agents or task.done(), what="the agent to start")
    if not agents:
        raise AssertionError(f"the agent ended before it started: {await task!r}")
    return task, agents[0]


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
