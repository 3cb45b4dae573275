"""The watcher lane: the claimed run's payload, `complete-watcher`, the two ways to
"Run now" (the device trigger and the tool proxy's `manage_watchers`), and the tool
proxy's reads of a watcher (`get_watcher`, `list_watchers`), which say where it is pinned.

See docs/protocol.md, "Poll and claim", "Watcher lane: completion" and "Run now".
"""

from __future__ import annotations

import copy
from typing import Any, Final

from device_agent.devserver.access import (
    bound_device,
    check_device_binding,
    refuse_run_now,
    report_for_run,
)
from device_agent.devserver.http import Request, Response
from device_agent.devserver.state import DevState, RunRecord, WatcherRecord, iso
from device_agent.devserver.wire import (
    INVALID_BODY,
    NUL_IN_JSONB,
    NUL_IN_TEXT,
    Caller,
    digits,
    duration,
    error,
    exit_code,
    has_nul,
    json_object,
    opt_text,
    parses_as_time,
    path_id,
    run_now_answer,
    trimmed,
)

DUPLICATE_WINDOW: Final = (
    "duplicate key value violates unique constraint"
    ' "insight_windows_insight_id_granularity_window_start_key"'
)


def claim_payload(state: DevState, run: RunRecord) -> dict[str, Any]:
    approved = copy.deepcopy(run.approved_input)
    watcher = state.find_watcher(run.watcher_id) if run.watcher_id is not None else None
    return {
        "watcher": _watcher_json(watcher, run, approved),
        "event": {"trigger_event_id": None, "fired_at": iso(run.created_at), "payload": approved},
        "context": {"device": {"worker_id": run.device_id}, "user": {"user_id": state.user.id}},
    }


def _watcher_json(
    watcher: WatcherRecord | None, run: RunRecord, approved: dict[str, Any]
) -> dict[str, Any]:
    kind = trimmed(approved.get("agent_kind"))
    return {
        "id": str(run.watcher_id) if run.watcher_id is not None else "",
        "name": watcher.name if watcher else None,
        "slug": watcher.slug if watcher else None,
        "agent_kind": kind or (watcher.agent_kind if watcher else None),
        "notification_channel": watcher.notification_channel if watcher else "canvas",
        "notification_priority": watcher.notification_priority if watcher else "normal",
        "execution_config": copy.deepcopy(watcher.execution_config) if watcher else None,
        "prompt": watcher.prompt if watcher else None,
    }


# ============================================================== completion


def complete_watcher(
    state: DevState, caller: Caller, request: Request, *, run_id_text: str
) -> Response:
    checked = report_for_run(state, caller, request, run_id_text)
    if isinstance(checked, Response):
        return checked
    run, body = checked
    worker_id = body.get("worker_id")
    if run.run_type != "watcher":
        return error(409, "Not a watcher run")
    if run.watcher_id is None:
        return error(500, "Watcher run missing watcher_id")
    denied = check_device_binding(state, caller, run, worker_id)
    if denied is not None:
        return denied
    window = _validate_window(run.approved_input, iso(state.now()))
    if isinstance(window, str):
        _fail_malformed(state, run, window)
        return error(400, window)
    if run.status != "running":
        # Only an anonymous caller or a truly concurrent duplicate gets here
        # (docs/protocol.md, "What a real server does").
        return Response.json(200, {"ok": True, "status": run.status, "idempotent": True})
    explicit = run.approved_input.get("window_start") is not None
    return _record_completion(state, run, body, window if explicit else None)


def _validate_window(approved: dict[str, Any], now: str) -> tuple[str, str] | str:
    """(start, end), or the error message. A missing bound falls back to now."""
    bounds = []
    for key in ("window_start", "window_end"):
        raw = approved.get(key)
        if raw is None:
            bounds.append(now)
        elif not isinstance(raw, str):
            return f"approved_input.{key} must be an ISO timestamp string"
        elif not parses_as_time(raw):
            return f"approved_input.{key} is not a valid ISO timestamp"
        else:
            bounds.append(raw)
    return bounds[0], bounds[1]


def _fail_malformed(state: DevState, run: RunRecord, reason: str) -> None:
    # The server fails a run whose window it cannot use, so it cannot loop forever.
    if run.status != "running":
        return
    run.status = "failed"
    run.error = f"Invalid completion payload: {reason}"
    run.exit_reason = "error_message"
    run.output = None
    run.completed_at = state.now()
    run.completions_committed += 1
    _touch_watcher(state, run)


def _refusal(body: dict[str, Any], failed: bool) -> Response | None:
    """What Postgres refuses, checked in the order the real transaction writes.

    A failure report stores `error` (text) and drops `output`; a success stores
    `output` inside the window's jsonb. U+0000 fails either, on every retry
    (docs/protocol.md, "Text the server can store").
    """
    texts = [body.get("exit_reason"), body.get("exit_signal")]
    if failed:
        texts.append(body.get("error"))
    if any(has_nul(text) for text in texts):
        return error(500, NUL_IN_TEXT)
    if not failed and has_nul(body.get("output")):
        return error(500, NUL_IN_JSONB)
    return None


def _record_completion(
    state: DevState, run: RunRecord, body: dict[str, Any], window: tuple[str, str] | None
) -> Response:
    """Store a report. `window` None: the run had none (the server used "now")."""
    error_text = body.get("error")
    failed = isinstance(error_text, str) and error_text.strip() != ""
    code = exit_code(body.get("exit_code"))
    if isinstance(code, Response):
        return code  # the transaction rolled back: nothing changed
    refused = _refusal(body, failed)
    if refused is not None:
        return refused  # the run stays running
    window_key = _window_key(state, run, window)
    if not failed and window_key is not None and state.has_window(run.watcher_id or 0, window_key):
        return error(500, DUPLICATE_WINDOW)  # the run stays running
    output = body.get("output") if isinstance(body.get("output"), str) else ""
    run.exit_code = code
    run.exit_signal = opt_text(body.get("exit_signal"))
    run.duration_ms = duration(body.get("duration_ms"))
    run.completed_at = state.now()
    run.completions_committed += 1
    if failed:
        run.status = "failed"
        run.error = str(error_text)
        run.output = None  # the server drops the output of a failed run
        run.exit_reason = opt_text(body.get("exit_reason")) or "error_message"
    else:
        if window_key is not None and window is not None:
            state.record_window(run.watcher_id or 0, window[0], window[1])
        run.status = "completed"
        run.error = None
        run.output = output
        run.exit_reason = opt_text(body.get("exit_reason")) or "ok"
        run.extracted_data = {
            "kind": "device_cli_output",
            "output": output,
            "agent_kind": trimmed(run.approved_input.get("agent_kind")),
        }
    _touch_watcher(state, run)
    return Response.json(200, {"ok": True, "status": run.status})


def _window_key(state: DevState, run: RunRecord, window: tuple[str, str] | None) -> str | None:
    # Only a real watcher's explicit window can collide: a "now" fallback or a
    # raw run without a watcher would only trip tests that freeze the clock.
    if window is None or run.watcher_id is None or state.find_watcher(run.watcher_id) is None:
        return None
    return window[0]


def _touch_watcher(state: DevState, run: RunRecord) -> None:
    watcher = state.find_watcher(run.watcher_id) if run.watcher_id is not None else None
    if watcher is not None:
        watcher.last_fired_at = state.now()


# ================================================================= trigger


def trigger(state: DevState, caller: Caller, request: Request, *, watcher_id_text: str) -> Response:
    watcher_id = path_id(watcher_id_text, "Invalid watcher_id")
    if isinstance(watcher_id, Response):
        return watcher_id
    device = bound_device(state, caller)
    if isinstance(device, Response):
        return device
    watcher = state.find_watcher(watcher_id)
    refused = refuse_run_now(watcher, device, "Watcher")
    if refused is not None:
        return refused
    assert watcher is not None
    if not watcher.agent_id:
        return error(409, "Watcher has no agent assigned")
    run, created = state.enqueue_manual(watcher)
    return run_now_answer(run, state.now(), already_queued=not created)


# The actions Lobu 1.6.0's `manage_watchers` knows (seen: any other gets a 400 naming them).
MANAGE_WATCHERS_ACTIONS: Final = (
    "complete_window",
    "create",
    "create_from_version",
    "create_version",
    "delete",
    "get_component_reference",
    "get_feedback",
    "get_version_details",
    "get_versions",
    "set_reaction_script",
    "submit_feedback",
    "trigger",
    "update",
    "upgrade",
)


def manage_watchers(
    state: DevState, caller: Caller, request: Request, *, org_slug: str
) -> Response:
    """The tool proxy's `manage_watchers`, of which the dev server has `action: "trigger"`.

    As on Lobu 1.6.0: an action it does not know (`get` among them: reading a watcher is the
    `get_watcher` tool) gets 400 `Unknown action: <a>. Valid actions: …`; `trigger` does not
    check pinning and answers an existing pending or running run without `already_queued`
    (docs/protocol.md, "Run now").
    """
    if org_slug != state.org.slug:
        return _no_such_org(org_slug)
    body = json_object(request)
    if body is None:
        return error(400, INVALID_BODY)
    action = body.get("action")
    if action not in MANAGE_WATCHERS_ACTIONS:
        shown = action if isinstance(action, str) else "undefined"
        valid = ", ".join(MANAGE_WATCHERS_ACTIONS)
        return error(400, f"Unknown action: {shown}. Valid actions: {valid}.")
    if action != "trigger":
        return error(501, f"the dev server does not implement manage_watchers {action!r}")
    raw_id = body.get("watcher_id")
    watcher_id = digits(str(raw_id)) if isinstance(raw_id, int | str) else None
    watcher = state.find_watcher(watcher_id) if watcher_id is not None else None
    if watcher is None:
        return error(400, f"Watcher {raw_id} not found.")
    # Inferred texts: these two answers were never observed.
    if watcher.status != "active":
        return error(400, f"Watcher {watcher.id} is not active.")
    if not watcher.agent_id:
        return error(400, f"Watcher {watcher.id} is not assigned to a Lobu agent.")
    run, _created = state.enqueue_manual(watcher)
    answer = {"action": "trigger", "watcher_id": str(watcher.id), "run_id": run.id}
    return Response.json(200, answer | {"status": run.status})


def get_watcher(state: DevState, caller: Caller, request: Request, *, org_slug: str) -> Response:
    """The tool proxy's `get_watcher {"watcher_id": "<id>"}`: the watcher's windows and, under
    `watcher`, what it is (`device_worker_id`: the device UUID it is pinned to, or null).

    As the upstream tool does, an id no watcher has gets 200 with no `watcher` key. Only the
    fields a device reads are filled in; windows list what this server stored."""
    if org_slug != state.org.slug:
        return _no_such_org(org_slug)
    body = json_object(request)
    if body is None:
        return error(400, INVALID_BODY)
    raw_id = body.get("watcher_id")
    if raw_id is None:
        return error(400, "/watcher_id: Required property")
    if not isinstance(raw_id, str):
        return error(400, "/watcher_id: Expected string")
    watcher_id = digits(raw_id)
    if watcher_id is None:  # the id goes to a bigint column unchecked
        return error(500, f'invalid input syntax for type bigint: "{raw_id}"')
    watcher = state.find_watcher(watcher_id)
    windows = [
        {"watcher_id": str(watcher_id), "window_start": start, "window_end": end}
        for start, end in state.windows_of(watcher_id)
    ]
    answer: dict[str, Any] = {"windows": windows}
    if watcher is not None:
        answer["watcher"] = {
            "watcher_id": str(watcher.id),
            "watcher_name": watcher.name,
            "slug": watcher.slug or "",
            "status": watcher.status,
            "schedule": watcher.schedule,
            "agent_id": watcher.agent_id,
            "agent_kind": watcher.agent_kind,
            "device_worker_id": watcher.device_id,
            "version": watcher.version_id,
        }
    answer["pagination"] = {"page": 1, "page_size": 50, "total": len(windows)}
    answer["metadata"] = {"query_type": "specific"}
    return Response.json(200, answer)


def list_watchers(state: DevState, caller: Caller, request: Request, *, org_slug: str) -> Response:
    """The tool proxy's `list_watchers`: `{"watchers": [...]}`, each with `watcher_id` (a
    string) and `device_worker_id`; only active ones unless `status` is given; `watcher_id`
    and `status` filter."""
    if org_slug != state.org.slug:
        return _no_such_org(org_slug)
    body = json_object(request) if request.body.strip() else {}
    if body is None:
        return error(400, INVALID_BODY)
    wanted_id, status = body.get("watcher_id"), body.get("status") or "active"
    rows = [
        {
            "watcher_id": str(watcher.id),
            "name": watcher.name,
            "slug": watcher.slug,
            "status": watcher.status,
            "schedule": watcher.schedule,
            "agent_id": watcher.agent_id,
            "agent_kind": watcher.agent_kind,
            "device_worker_id": watcher.device_id,
            "execution_config": copy.deepcopy(watcher.execution_config),
            "notification_channel": watcher.notification_channel,
            "notification_priority": watcher.notification_priority,
            "organization_slug": state.org.slug,
        }
        for watcher in sorted(state.watchers(), key=lambda w: w.created_at, reverse=True)
        if watcher.status == status and (wanted_id is None or str(watcher.id) == str(wanted_id))
    ]
    return Response.json(200, {"watchers": rows})


def _no_such_org(org_slug: str) -> Response:
    return error(404, f"Organization '{org_slug}' not found")
