"""Where each lane's reports go, and how a run nobody here executes is failed.

The route strings of every lane live here, once: the lanes
(`device_agent.lanes`) and `device-agent trigger` read them from this module.
`unhandled_failure` covers docs/protocol.md, "Runs the agent does not
handle": every claimed run must end, so a run type this agent does not
execute is failed through its own lane's route, never left claimed until the
reaper finds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from device_agent.lanes.automation.answers import local_failure_body
from device_agent.server.client import GENERIC_COMPLETION_ROUTE
from device_agent.textsafe import storable

WATCHER_COMPLETION_ROUTE: Final = "/api/workers/me/runs/{run_id}/complete-watcher"
AUTOMATION_COMPLETION_ROUTE: Final = "/api/workers/me/runs/{run_id}/complete-automation"
CHAT_COMPLETION_ROUTE: Final = "/api/workers/me/runs/{run_id}/complete-chat"
ACTION_COMPLETION_ROUTE: Final = "/api/workers/complete-action"
# "Run now", per lane: docs/protocol.md, "Run now".
TRIGGER_ROUTES: Final = {
    "watcher": "/api/workers/me/watchers/{item_id}/trigger",
    "automation": "/api/workers/me/automations/{item_id}/trigger",
}


def trigger_route(lane: str, item_id: str) -> str:
    """The device route that queues a run of `item_id` in `lane` ("watcher" or "automation")."""
    try:
        return TRIGGER_ROUTES[lane].format(item_id=item_id)
    except KeyError:
        raise ValueError(f"there is no Run now for run_type={lane!r}") from None


@dataclass(frozen=True)
class FailureReport:
    route: str
    body: dict[str, Any]


def unhandled_failure(run_type: str, run_id: int, *, worker_id: str, error: str) -> FailureReport:
    """The report that fails a claimed run of `run_type` through the route that lane reads."""
    message = storable(error)
    if run_type == "automation":
        return FailureReport(
            route=AUTOMATION_COMPLETION_ROUTE.format(run_id=run_id),
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
