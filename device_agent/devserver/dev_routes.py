"""`/_dev/*`: unauthenticated helpers for tests and for a human experimenting.

The server binds loopback only, which is what makes these safe. Every route
takes and answers JSON:

    GET  /_dev/state                        the whole state (uploaded transcripts included)
    POST /_dev/tokens                       {scopes?, bound_worker_id?, expires_in?} -> {token}
    POST /_dev/watchers                     DevState.add_watcher's arguments -> {watcher_id}
    POST /_dev/watchers/<id>/runs           {dispatch_source?, window_start?, window_end?}
    POST /_dev/automations                  DevState.add_automation's arguments -> {automation_id}
    POST /_dev/automations/<id>/runs        {dispatch_source?, window_*?, event_turn?} -> {run_id}
    POST /_dev/watchers|automations/<id>/pin {worker_id}: pin it (and its queued runs) there
    GET  /_dev/runs/<id>                    one run: status, finalize attempts, windows completed,
                                            the transcript its device uploaded
    POST /_dev/runs/<id>/cancel             cancel it (its heartbeats then get 409)
    POST /_dev/conversations                DevState.add_conversation's arguments
                                            (a device chat) -> {conversation_id}
    POST /_dev/conversations/<id>/messages  {message, ephemeral_context?}: a person writes;
                                            the turn is queued for the device -> {run_id}
    GET  /_dev/conversations/<id>           its history (completed exchanges) and its turns
    POST /_dev/faults                       Fault's fields -> armed; {"chaos": rate} for chaos mode
    DELETE /_dev/faults                     disarm everything
    POST /_dev/warmup                       {seconds}: hold polls as a booting server does
    POST /_dev/settings                     {next_poll_seconds?, min_app_version?}
    POST /_dev/oauth/approve | deny         {user_code}
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any, Final

from device_agent.devserver.faults import Fault
from device_agent.devserver.http import Request, Response
from device_agent.devserver.routes_auth import WORKER_ID_RE
from device_agent.devserver.state import DEFAULT_SCOPES, DevState
from device_agent.devserver.wire import INVALID_BODY, error, json_object, not_found

_ID_ROUTE: Final = re.compile(r"^/_dev/(watchers|automations|runs)/(\d+)/?(runs|cancel|pin)?$")
_CONVERSATION_ROUTE: Final = re.compile(r"^/_dev/conversations/([A-Za-z0-9_-]+)/?(messages)?$")
_SETTINGS: Final = ("next_poll_seconds", "min_app_version")

Admin = Callable[[DevState, dict[str, Any]], Response]


def admin(state: DevState, request: Request) -> Response:
    """Answer one `/_dev` request (the caller holds the state lock)."""
    body = json_object(request) if request.body else {}
    if body is None:
        return error(400, INVALID_BODY)
    try:
        return _route(state, request, body)
    except KeyError as exc:
        return error(404, f"not found: {exc.args[0] if exc.args else exc}")
    except (TypeError, ValueError) as exc:
        return error(400, str(exc))


def _route(state: DevState, request: Request, body: dict[str, Any]) -> Response:
    key = (request.method, request.path)
    if key == ("GET", "/_dev/state"):
        return Response.json(200, state.snapshot_json())
    if key == ("DELETE", "/_dev/faults"):
        state.faults.clear()
        return Response.json(200, {"cleared": True})
    simple: dict[tuple[str, str], Admin] = {
        ("POST", "/_dev/tokens"): _token,
        ("POST", "/_dev/watchers"): _watcher,
        ("POST", "/_dev/automations"): _automation,
        ("POST", "/_dev/conversations"): _conversation,
        ("POST", "/_dev/faults"): _fault,
        ("POST", "/_dev/warmup"): _warmup,
        ("POST", "/_dev/settings"): _settings,
        ("POST", "/_dev/oauth/approve"): lambda s, b: _decide(s, b, approve=True),
        ("POST", "/_dev/oauth/deny"): lambda s, b: _decide(s, b, approve=False),
    }
    if key in simple:
        return simple[key](state, body)
    chat = _CONVERSATION_ROUTE.match(request.path)
    if chat is not None:
        return _conversation_route(state, request.method, chat.group(1), chat.group(2), body)
    match = _ID_ROUTE.match(request.path)
    if match is None:
        return not_found()
    kind, ident, action = match.groups()
    if (request.method, kind, action) == ("POST", "watchers", "runs"):
        return Response.json(200, {"run_id": state.queue_run(ident, **body)})
    if (request.method, kind, action) == ("POST", "automations", "runs"):
        return Response.json(200, {"run_id": state.queue_automation_run(ident, **body)})
    if request.method == "POST" and kind in ("watchers", "automations") and action == "pin":
        return _pin(state, kind, ident, body)
    if (request.method, kind, action) == ("GET", "runs", None):
        return Response.json(200, _run_json(state, int(ident)))
    if (request.method, kind, action) == ("POST", "runs", "cancel"):
        state.cancel_run(int(ident))
        return Response.json(200, _run_json(state, int(ident)))
    return not_found()


def _token(state: DevState, body: dict[str, Any]) -> Response:
    token = state.add_token(
        str(body.get("scopes") or DEFAULT_SCOPES),
        body.get("bound_worker_id"),
        expires_in=body.get("expires_in"),
    )
    return Response.json(200, {"token": token})


def _watcher(state: DevState, body: dict[str, Any]) -> Response:
    return Response.json(200, {"watcher_id": state.add_watcher(**body)})


def _automation(state: DevState, body: dict[str, Any]) -> Response:
    return Response.json(200, {"automation_id": state.add_automation(**body)})


def _conversation(state: DevState, body: dict[str, Any]) -> Response:
    return Response.json(200, {"conversation_id": state.add_conversation(**body)})


def _conversation_route(
    state: DevState, method: str, conversation_id: str, action: str | None, body: dict[str, Any]
) -> Response:
    if (method, action) == ("POST", "messages"):
        return Response.json(200, {"run_id": state.post_message(conversation_id, **body)})
    if (method, action) == ("GET", None):
        return Response.json(200, _conversation_json(state, conversation_id))
    return not_found()


def _conversation_json(state: DevState, conversation_id: str) -> dict[str, Any]:
    conversation = state.conversation(conversation_id)
    return {
        "conversation_id": conversation.id,
        "agent_kind": conversation.agent_kind,
        "history": conversation.history,
        "turns": [
            {
                "run_id": turn.id,
                "status": turn.status,
                "message": turn.approved_input.get("message"),
                "reply": turn.output,
                "error": turn.error,
                "exit_reason": turn.exit_reason,
            }
            for turn in state.turns(conversation_id)
        ],
    }


def _fault(state: DevState, body: dict[str, Any]) -> Response:
    if "chaos" in body:
        state.faults.chaos(rate=float(body["chaos"]), seed=body.get("seed"))
        return Response.json(200, {"chaos": body["chaos"]})
    fault = state.faults.add(Fault(**body))
    return Response.json(200, {"armed": dataclasses.asdict(fault)})


def _warmup(state: DevState, body: dict[str, Any]) -> Response:
    seconds = body.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise ValueError("seconds must be a number >= 0")
    state.start_warmup(float(seconds))
    return Response.json(200, {"warmup_seconds": seconds})


def _settings(state: DevState, body: dict[str, Any]) -> Response:
    unknown = set(body) - set(_SETTINGS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; expected some of {_SETTINGS}")
    for name, value in body.items():
        setattr(state, name, value)
    return Response.json(200, {name: getattr(state, name) for name in _SETTINGS})


def _pin(state: DevState, kind: str, ident: str, body: dict[str, Any]) -> Response:
    worker_id = body.get("worker_id")
    if not isinstance(worker_id, str) or not WORKER_ID_RE.match(worker_id):
        raise ValueError("worker_id must be 1-128 letters, digits and . _ : -")
    state.pin("watchers" if kind == "watchers" else "automations", ident, worker_id)
    return Response.json(200, {kind[:-1] + "_id": ident, "pinned_worker_id": worker_id})


def _decide(state: DevState, body: dict[str, Any], *, approve: bool) -> Response:
    user_code = str(body.get("user_code") or "").strip().upper()
    if not state.oauth.decide(user_code, approve, state.now()):
        raise KeyError(f"pending user code {user_code!r}")
    return Response.json(200, {"user_code": user_code, "approved": approve})


def _run_json(state: DevState, run_id: int) -> dict[str, Any]:
    run = state.find_run(run_id)
    if run is None:
        raise KeyError(f"run {run_id}")
    return {
        "run_id": run.id,
        "run_type": run.run_type,
        "status": run.status,
        "claimed_by": run.claimed_by,
        "heartbeats": run.heartbeats,
        "finalize_attempts": run.approved_input.get("finalize_nudge_count", 0),
        "completion_attempts": run.completion_attempts,
        "completions_committed": run.completions_committed,
        "windows_completed": run.windows_completed,
        "reason_code": run.reason_code,
        "error": run.error,
        "output": run.output,
        "exit_reason": run.exit_reason,
        "window_start": run.window_start,
        "window_end": run.window_end,
        "transcript": _transcript_json(state, run.id),
    }


def _transcript_json(state: DevState, run_id: int) -> dict[str, Any] | None:
    record = state.transcript(run_id)
    if record is None:
        return None
    return {
        "id": record.id,
        "terminal_status": record.terminal_status,
        "byte_size": record.byte_size,
        "entries": max(0, record.snapshot_jsonl.count("\n") - 1),
        "uploads": record.uploads,
        "snapshot_jsonl": record.snapshot_jsonl,
    }
