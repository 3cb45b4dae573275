"""Where automation-lane reports go, and how a run nobody here executes is failed.

`AUTOMATION_LANE` is the entry this lane adds to the lane table
(`device_agent.lanes.LANES`). `unhandled_failure` covers docs/protocol.md,
"Runs the agent does not handle": every claimed run must end, so a run type
this agent does not execute is failed through its own lane's route, never
left claimed until the reaper finds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from device_agent.automation.answers import local_failure_body
from device_agent.client import GENERIC_COMPLETION_ROUTE
from device_agent.textsafe import storable


@dataclass(frozen=True)
class LaneRoutes:
    run_type: str
    payload_key: str
    completion_route: str
    trigger_route: str


AUTOMATION_LANE: Final = LaneRoutes(
    run_type="automation",
    payload_key="automation",
    completion_route="/api/workers/me/runs/{run_id}/complete-automation",
    trigger_route="/api/workers/me/automations/{item_id}/trigger",
)

CHAT_COMPLETION_ROUTE: Final = "/api/workers/me/runs/{run_id}/complete-chat"
ACTION_COMPLETION_ROUTE: Final = "/api/workers/complete-action"


@dataclass(frozen=True)
class FailureReport:
    route: str
    body: dict[str, Any]


def unhandled_failure(run_type: str, run_id: int, *, worker_id: str, error: str) -> FailureReport:
    """The report that fails a claimed run of `run_type` through the route that lane reads."""
    message = storable(error)
    if run_type == AUTOMATION_LANE.run_type:
        return FailureReport(
            route=AUTOMATION_LANE.completion_route.format(run_id=run_id),
            body=local_failure_body(message, worker_id=worker_id, finalize_attempt=0),
        )
    if run_type == "chat_message":
        return FailureReport(
            route=CHAT_COMPLETION_ROUTE.format(run_id=run_id),
            body={"worker_id": worker_id, "error": message, "exit_reason": "error_message"},
        )
    # /complete-action and /complete both take status + error_message, not error.
    route = ACTION_COMPLETION_ROUTE if run_type == "action" else GENERIC_COMPLETION_ROUTE
    return FailureReport(
        route=route,
        body={
            "run_id": run_id,
            "worker_id": worker_id,
            "status": "failed",
            "error_message": message,
        },
    )
