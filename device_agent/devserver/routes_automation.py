"""The automation lane of current Lobu servers: the claim gate, long-poll, the
automation claim, the exit report with its resume loop and Run now. Device
chats are `routes_chat`, the MCP stand-in is `routes_mcp`.

See docs/protocol.md, "Automation lane", "Automation lane: exit report and
resume" and "Long-poll". Texts and the resume rule follow lobu-ai/lobu
`run-lifecycle.ts` (`completeAutomationRun`).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Final

from device_agent.devserver import routes_chat
from device_agent.devserver.access import (
    agent_session,
    bound_device,
    check_device_binding,
    refuse_run_now,
    report_for_run,
)
from device_agent.devserver.http import Request, Response
from device_agent.devserver.state import DeviceRecord, DevState, RunRecord, iso
from device_agent.devserver.wire import (
    Caller,
    duration,
    error,
    json_object,
    opt_text,
    path_id,
    run_now_answer,
    trimmed,
)

MAX_WAIT_SECONDS: Final = 25
OUTPUT_TAIL_CHARS: Final = 2000
# Capabilities each platform may claim; `linux` is no platform at all, so a
# device registered as `linux` never gets `automations.execute`.
PLATFORM_CAPABILITIES: Final = {
    "macos": frozenset({"automations.execute", "os.shell", "automations.workspace.v1"}),
    "headless": frozenset({"automations.execute", "automations.workspace.v1"}),
    "chrome-extension": frozenset(),
}
MISSING_COMPLETE_WINDOW_NUDGE: Final = (
    "Device CLI exited without calling completeWindow. Re-run the Automation task and "
    "finalize via the lobu skill + CLI (preferred): "
    "`lobu memory exec` with client.knowledge.read({ automation_id }) then "
    "client.automations.completeWindow({ window_token, extracted_data, run_id }). "
    "MCP query_sdk/run_sdk is also fine if wired. Do not only print a summary."
)
_VERSION_RE: Final = re.compile(r"^\d+\.\d+\.\d+(?:\.\d+)?$")


# ==================================================================== poll


def check_app_version(state: DevState, body: dict[str, Any]) -> Response | None:
    """409 `upgrade_required` below the operator's floor (a dev-server setting)."""
    floor = state.min_app_version
    if floor is None or _version(floor) is None:
        return None
    have = _version(body.get("app_version"))
    if have is not None and have >= (_version(floor) or ()):
        return None
    label = {
        "chrome-extension": "the Chrome extension",
        "macos": "the Mac app",
        "headless": "the headless worker",
    }.get(str(body.get("platform")), "your Lobu client")
    return error(
        409,
        "upgrade_required",
        error_description=f"Update {label} to continue (this server requires a newer version)",
    )


def _version(value: Any) -> tuple[int, ...] | None:
    if not isinstance(value, str) or not _VERSION_RE.match(value):
        return None
    return tuple(int(part) for part in value.split(".")[:3])


def claim_next(
    state: DevState, device: DeviceRecord, worker_id: str, body: dict[str, Any]
) -> RunRecord | None:
    """The claim gate: platform or capability, `agent_kinds`, capacity, one active run
    per automation, one turn per conversation."""
    if body.get("capacity_available") == 0:
        return None
    if not may_execute_automations(device):
        return None
    kinds = body.get("agent_kinds")
    if isinstance(kinds, list) and not kinds:
        return None

    def eligible(run: RunRecord) -> bool:
        if run.conversation_id is not None:
            return routes_chat.may_claim(state, run, kinds)
        if run.run_type != "automation" or run.automation_id is None:
            return True  # other lanes' runs queued by tests go out as they are
        kind = trimmed(run.approved_input.get("agent_kind"))
        if isinstance(kinds, list) and kind is not None and kind not in kinds:
            return False
        active = state.active_run_of_automation(run.automation_id)
        return active is None or active.id == run.id

    return state.claim_next(device, worker_id, eligible)


def may_execute_automations(device: DeviceRecord) -> bool:
    allowed = PLATFORM_CAPABILITIES.get(device.platform or "", frozenset())
    granted = {name for name, on in device.capabilities.items() if on is True} & allowed
    return device.platform == "macos" or "automations.execute" in granted


def long_poll_seconds(state: DevState, request: Request, response: Response) -> float:
    """How long to hold this poll: its `wait_seconds` when it came back idle.

    Only the automation lane holds: Lobu 1.6.0 (the watcher lane) ignores
    `wait_seconds` and answers at once, as recorded.
    """
    if state.lane != "automation" or not is_idle(response):
        return 0.0
    body = json_object(request) or {}
    wait = body.get("wait_seconds")
    if body.get("capacity_available") == 0:
        return 0.0
    if isinstance(wait, bool) or not isinstance(wait, int | float) or wait <= 0:
        return 0.0
    # Inferred: what a real server does above 25 s is not known ("may be
    # refused"); the dev server holds 25 s at most.
    return float(min(wait, MAX_WAIT_SECONDS))


def is_idle(response: Response) -> bool:
    if response.status != 200:
        return False
    body = json.loads(response.body)
    return isinstance(body, dict) and "run_id" not in body and "next_poll_seconds" in body


def claim_payload(state: DevState, run: RunRecord) -> dict[str, Any]:
    automation = state.find_automation(run.automation_id or 0)
    if automation is None:  # automations are never deleted: a dev-server bug
        raise LookupError(f"automation run {run.id} has no automation")
    approved = copy.deepcopy(run.approved_input)
    context: dict[str, Any] = {
        "device": {"worker_id": run.device_id},
        "user": {"user_id": state.user.id},
    }
    if automation.agent_id:
        context["agent_session"] = agent_session(state, run)
    return {
        "automation": {
            "id": str(automation.id),
            "name": automation.name,
            "slug": automation.slug,
            "agent_kind": trimmed(approved.get("agent_kind")) or automation.agent_kind,
            "execution_config": copy.deepcopy(automation.execution_config),
            "prompt": automation.prompt,
            "extraction_schema": copy.deepcopy(automation.extraction_schema),
        },
        "event": {"trigger_event_id": None, "fired_at": iso(run.created_at), "payload": approved},
        "context": context,
    }


# ============================================================ exit report


def complete_automation(
    state: DevState, caller: Caller, request: Request, *, run_id_text: str
) -> Response:
    # The exit report may follow a window the CLI completed over MCP, so a
    # terminal run is no 409 here (`allowTerminal`).
    checked = report_for_run(state, caller, request, run_id_text, terminal_ok=True)
    if isinstance(checked, Response):
        return checked
    run, body = checked
    worker_id = body.get("worker_id")
    if run.run_type != "automation":
        return error(409, "Not an Automation run")
    if run.automation_id is None:
        return error(500, "Automation run missing automation_id")
    if run.claimed_by != worker_id:
        return _idempotent(run.status)
    denied = check_device_binding(state, caller, run, worker_id)
    if denied is not None:
        return denied
    return _exit_report(state, run, body)


def _exit_report(state: DevState, run: RunRecord, body: dict[str, Any]) -> Response:
    # This lane strips NUL itself and keeps only the output's tail.
    error_text = body.get("error")
    error_text = error_text.replace("\x00", "") if isinstance(error_text, str) else None
    raw_output = body.get("output")
    output = raw_output.replace("\x00", "") if isinstance(raw_output, str) else ""
    tail = output[-OUTPUT_TAIL_CHARS:] or None
    if error_text is not None and error_text.strip():
        if run.status != "running":
            return _idempotent(run.status)
        _finish(state, run, "failed", body, tail, error_text)
        return Response.json(200, {"ok": True, "status": "failed"})
    if body.get("exit_reason") == "cancelled":
        if run.status != "running":
            return _idempotent(run.status)
        _finish(state, run, "cancelled", body, tail, None)
        run.reason_code = "device_daemon_shutdown"
        return Response.json(
            200,
            {"ok": True, "status": "cancelled", "reason_code": run.reason_code, "run_id": run.id},
        )
    if run.status == "completed":
        if run.exit_reason is not None:
            return Response.json(
                200, {"ok": True, "status": "completed", "run_id": run.id, "idempotent": True}
            )
        _stamp_exit(run, body)
        run.exit_reports += 1
        return Response.json(200, {"ok": True, "status": "completed", "run_id": run.id})
    if run.status != "running":
        return _idempotent(run.status)
    if run.approved_input.get("trigger_execution") == "turn":
        _finish(state, run, "completed", body, tail, None)
        run.reason_code = "event_turn"
        return Response.json(
            200, {"ok": True, "status": "completed", "reason_code": "event_turn", "run_id": run.id}
        )
    return _missing_window(state, run, body, tail)


def _missing_window(
    state: DevState, run: RunRecord, body: dict[str, Any], tail: str | None
) -> Response:
    """A clean exit without completeWindow: resume while the budget lasts, then fail."""
    automation = state.find_automation(run.automation_id or 0)
    budget = automation.max_attempts if automation else 1
    granted = _int(run.approved_input.get("finalize_nudge_count"))
    reported = body.get("finalize_attempt")
    attempt = (
        max(0, int(reported))
        if isinstance(reported, int | float) and not isinstance(reported, bool)
        else granted
    )
    if attempt < granted:
        # The device never saw the resume it was granted: serve it again.
        return _resume(granted, budget, idempotent=True)
    if granted < budget:
        run.approved_input["finalize_nudge_count"] = granted + 1
        run.output = tail
        return _resume(granted + 1, budget, idempotent=False)
    reason = (
        "Device CLI exited without calling completeWindow "
        + (f"after {budget + 1} attempt(s)" if budget > 0 else "(finalize nudges disabled)")
        + ". Use the lobu skill + `lobu memory exec` (knowledge.read → completeWindow) "
        "or MCP query_sdk/run_sdk. Check lobu CLI login/org, gateway reachability, "
        "and that the device token has mcp:write if using MCP."
    )
    _finish(state, run, "failed", body, tail, reason)
    run.reason_code = "missing_complete_window"
    return Response.json(
        200,
        {
            "ok": True,
            "status": "failed",
            "reason_code": "missing_complete_window",
            "attempt": granted,
            "max_attempts": budget,
            "error": reason,
        },
    )


def _resume(attempt: int, budget: int, *, idempotent: bool) -> Response:
    answer: dict[str, Any] = {
        "ok": True,
        "status": "resume",
        "reason_code": "missing_complete_window",
        "attempt": attempt,
        "max_attempts": budget,
        "nudge": MISSING_COMPLETE_WINDOW_NUDGE,
        "error": MISSING_COMPLETE_WINDOW_NUDGE,
    }
    if idempotent:
        answer["idempotent"] = True
    return Response.json(200, answer)


def _finish(
    state: DevState,
    run: RunRecord,
    status: str,
    body: dict[str, Any],
    tail: str | None,
    error_text: str | None,
) -> None:
    run.status = status  # type: ignore[assignment]  # one of RunStatus by construction
    run.error = error_text
    run.output = tail
    run.completed_at = state.now()
    run.completions_committed += 1
    run.exit_reports += 1
    _stamp_exit(run, body)
    if status == "failed" and run.exit_reason is None:
        run.exit_reason = "error_message"
    automation = state.find_automation(run.automation_id or 0)
    if automation is not None:
        automation.last_fired_at = state.now()


def _stamp_exit(run: RunRecord, body: dict[str, Any]) -> None:
    code = body.get("exit_code")
    run.exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
    run.exit_signal = opt_text(body.get("exit_signal"))
    run.exit_reason = opt_text(body.get("exit_reason")) or run.exit_reason or "ok"
    run.duration_ms = duration(body.get("duration_ms"))


def _idempotent(status: str) -> Response:
    return Response.json(200, {"ok": True, "status": status, "idempotent": True})


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


# ================================================================= Run now


def trigger(
    state: DevState, caller: Caller, request: Request, *, automation_id_text: str
) -> Response:
    automation_id = path_id(automation_id_text, "Invalid automation_id")
    if isinstance(automation_id, Response):
        return automation_id
    device = bound_device(state, caller)
    if isinstance(device, Response):
        return device
    automation = state.find_automation(automation_id)
    refused = refuse_run_now(automation, device, "Automation")
    if refused is not None:
        return refused
    assert automation is not None
    active = state.active_run_of_automation(automation.id)
    run = active or state.find_run(state.queue_automation_run(automation.id, "manual"))
    assert run is not None
    return run_now_answer(run, state.now(), already_queued=active is not None)
