"""The watcher lane: one CLI run per claim, reported to `complete-watcher`.

See docs/protocol.md, "Watcher lane: completion"; a watcher run never asks
for another round.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from device_agent.agent.result import Report
from device_agent.executors.request import ExecutionRequest
from device_agent.lanes.base import Done, Verdict
from device_agent.lanes.routes import WATCHER_COMPLETION_ROUTE, trigger_route
from device_agent.lanes.watcher.prompt import build_prompt
from device_agent.server.client import Answer
from device_agent.server.protocol import Claim, WatcherRun, parse_watcher_run
from device_agent.textsafe import storable


@dataclass(frozen=True)
class WatcherClaim:
    """A watcher run as the pipeline sees it."""

    run: WatcherRun

    @property
    def run_id(self) -> int:
        return self.run.run_id

    @property
    def item_id(self) -> str:
        return self.run.watcher.id

    @property
    def name(self) -> str:
        return self.run.watcher.name

    @property
    def agent_kind(self) -> str | None:
        return self.run.agent_kind

    @property
    def execution_config(self) -> Mapping[str, Any]:
        return self.run.watcher.execution_config

    @property
    def uses_device_tools(self) -> bool:
        return True

    @property
    def transcript_token(self) -> str | None:
        return None  # a watcher run's transcript is kept on the device only

    def prompt(self, nudge: str | None) -> str:
        return build_prompt(self.run)

    def wire(self, request: ExecutionRequest, *, server: str) -> ExecutionRequest:
        return request  # the device's own MCP wiring, nothing more

    def review(self, report: Report) -> Report:
        return report  # reported as the CLI left it


class WatcherLane:
    run_type = "watcher"
    may_resume = False

    def parse(self, claim: Claim) -> WatcherClaim:
        return WatcherClaim(parse_watcher_run(claim))

    def completion_route(self, run_id: int) -> str:
        return WATCHER_COMPLETION_ROUTE.format(run_id=run_id)

    def completion_body(
        self, report: Report, *, run_id: int, worker_id: str, attempt: int
    ) -> dict[str, Any]:
        return {
            "worker_id": worker_id,
            # Text the server can store (docs/protocol.md, "Text the server can store");
            # the journal keeps the raw text.
            "output": storable(report.output),
            "error": storable(report.error) if report.error else None,
            "duration_ms": max(0, int(report.duration_ms)),
            "exit_code": report.exit_code,
            "exit_signal": report.exit_signal,
            "exit_reason": str(report.exit_reason),
        }

    def read_completion(self, answer: Answer, *, attempt: int) -> Verdict:
        return Done()

    def after_loss(self, report: Report) -> Report | None:
        return None  # cancelled, reaped or taken elsewhere: the server wants nothing from us

    def trigger_route(self, item_id: str) -> str:
        return trigger_route(self.run_type, item_id)


WATCHER = WatcherLane()
