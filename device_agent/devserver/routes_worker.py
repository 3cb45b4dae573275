"""The routes both lanes share: poll, heartbeat and `/api/workers/complete`.

Check order, status codes and error strings follow the real handlers
(`poll.ts`, `run-lifecycle.ts`); see docs/protocol.md, "Poll and claim" and
"Heartbeat". What a claimed run looks like is the lane's business
(`routes_watcher.claim_payload`, `routes_automation.claim_payload`,
`routes_chat.claim_payload`).
"""

from __future__ import annotations

from typing import Any

from device_agent.devserver import routes_automation, routes_chat, routes_watcher
from device_agent.devserver.access import body_and_run_id
from device_agent.devserver.http import Request, Response
from device_agent.devserver.state import DeviceRecord, DevState, RunRecord
from device_agent.devserver.wire import (
    INVALID_BODY,
    Caller,
    error,
    json_object,
    opt_str,
    opt_text,
    worker_id_mismatch,
)

# ==================================================================== poll


def poll(state: DevState, caller: Caller, request: Request) -> Response:
    body = json_object(request)
    if body is None:
        return error(400, INVALID_BODY)
    if caller.token is None:
        # An anonymous worker registers no device and claims only server-side
        # lanes, which the dev server does not have.
        return idle(state)
    worker_id = body.get("worker_id")
    if not isinstance(worker_id, str) or not worker_id:
        return error(400, "worker_id is required")
    bound = caller.bound_worker_id
    if bound and bound != worker_id:
        return worker_id_mismatch(bound)
    platform = opt_str(body.get("platform"))
    known = state.find_device(worker_id)
    if known and known.platform and platform and platform != known.platform:
        return error(
            403,
            "platform_mismatch",
            error_description=f"worker is bound to platform '{known.platform}'",
        )
    if state.lane == "automation":
        refused = routes_automation.check_app_version(state, body)
        if refused is not None:
            return refused
    device = _upsert_device(state, worker_id, platform, body)
    if state.lane == "automation":
        run = routes_automation.claim_next(state, device, worker_id, body)
    else:
        run = state.claim_next(device, worker_id)
    if run is None:
        return idle(state)
    return Response.json(200, claim_answer(state, run))


def idle(state: DevState) -> Response:
    return Response.json(200, {"next_poll_seconds": state.next_poll_seconds})


def _upsert_device(
    state: DevState, worker_id: str, platform: str | None, body: dict[str, Any]
) -> DeviceRecord:
    device = state.ensure_device(worker_id)
    device.platform = device.platform or platform  # set once, on the first poll
    device.app_version = opt_str(body.get("app_version"))
    capabilities = body.get("capabilities")
    device.capabilities = dict(capabilities) if isinstance(capabilities, dict) else {}
    device.label = opt_str(body.get("label")) or device.label
    device.last_seen_at = state.now()
    device.polls += 1
    return device


def claim_answer(state: DevState, run: RunRecord) -> dict[str, Any]:
    if run.raw:
        payload = state.raw_payload(run)
    elif run.run_type == "automation":
        payload = routes_automation.claim_payload(state, run)
    elif run.conversation_id is not None:
        payload = routes_chat.claim_payload(state, run)
    else:
        payload = routes_watcher.claim_payload(state, run)
    return {
        "run_id": run.id,
        "run_type": run.run_type,
        "organization_id": state.org.id,
        "payload": payload,
    }


# =============================================================== heartbeat


def heartbeat(state: DevState, caller: Caller, request: Request) -> Response:
    checked = body_and_run_id(state, caller, request)
    if isinstance(checked, Response):
        return checked
    _, run_id = checked
    run = state.find_run(run_id)
    if run is not None:  # an anonymous worker may name any id
        run.last_heartbeat_at = state.now()
        run.heartbeats += 1
    return Response.json(200, {"continue": True})


# ============================================================== completion


def complete_generic(state: DevState, caller: Caller, request: Request) -> Response:
    """POST /api/workers/complete and /complete-action: the other run types' completion
    (`status`, `error_message`; `/complete-action` takes `error`, its answer is inferred)."""
    checked = body_and_run_id(state, caller, request)
    if isinstance(checked, Response):
        return checked
    body, run_id = checked
    run = state.find_run(run_id)
    if run is not None:
        run.status = "failed" if body.get("status") == "failed" else "completed"
        run.error = opt_text(body.get("error_message") or body.get("error"))
        run.completed_at = state.now()
        run.completions_committed += 1
    return Response.json(200, {"success": True})
