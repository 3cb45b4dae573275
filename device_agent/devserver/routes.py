"""The endpoints: answer each request exactly as a real Lobu server would (PROTOCOL.md).

Check order, status codes and error strings follow the real handlers
(`poll.ts`, `run-lifecycle.ts`, `watcher-trigger.ts`, the `/api/workers/*`
middleware), so a client that works here behaves the same against the real
thing. Every handler runs with the state lock held and never awaits, which is
what makes a claim atomic.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from http import HTTPStatus
from typing import Any, Final

from device_agent.devserver.faults import Fault
from device_agent.devserver.http import Request, Response
from device_agent.devserver.state import (
    LOCAL_INIT_SCOPES,
    ONLINE_WINDOW_SECONDS,
    DeviceRecord,
    DevState,
    RunRecord,
    TokenRecord,
    WatcherRecord,
    iso,
)

INVALID_BODY: Final = "Invalid or missing JSON body"
MALFORMED_JSON: Final = "Malformed JSON in request body"  # what the framework throws
NOT_IN_PROGRESS: Final = "Run is not in progress"
DUPLICATE_WINDOW: Final = (
    "duplicate key value violates unique constraint"
    ' "insight_windows_insight_id_granularity_window_start_key"'
)
PG_BIGINT_MAX: Final = 2**63 - 1

WORKER_SCOPES: Final = frozenset({"device_worker:run", "mcp:write", "mcp:admin"})
CHILD_PLATFORMS: Final = frozenset({"macos", "chrome-extension", "headless"})
CHILD_SELF_MINT_ONLY: Final = {
    "error": "insufficient_scope",
    "error_description": (
        "a device child token can only re-mint its own worker_id, not mint new device credentials"
    ),
}
WORKER_ID_RE: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# The /api/workers/* middleware lets a user-scoped token reach only these.
_USER_WORKER_PATHS: Final = frozenset(
    {"/api/workers/poll", "/api/workers/heartbeat", "/api/workers/stream", "/api/workers/complete"}
)
_USER_WORKER_PREFIXES: Final = ("/api/workers/me/auth-profiles", "/api/workers/me/feeds")
_USER_WORKER_PATTERNS: Final = (
    re.compile(r"^/api/workers/me/runs/\d+/complete-watcher$"),
    re.compile(r"^/api/workers/me/watchers/\d+/trigger$"),
)
_COMPLETE_WATCHER: Final = re.compile(r"^/api/workers/me/runs/([^/]+)/complete-watcher$")
_TRIGGER: Final = re.compile(r"^/api/workers/me/watchers/([^/]+)/trigger$")
_MANAGE_WATCHERS: Final = re.compile(r"^/api/([^/]+)/manage_watchers$")
_DEV_WATCHER_RUNS: Final = re.compile(r"^/_dev/watchers/(\d+)/runs$")


@dataclass(frozen=True)
class Caller:
    """Who is asking. `token` None is a trusted anonymous worker (allow_anonymous)."""

    token: TokenRecord | None

    @property
    def bound_worker_id(self) -> str | None:
        return self.token.bound_worker_id if self.token else None


Handler = Callable[[DevState, Caller, Request], Response]


def error(status: int, message: str, **extra: Any) -> Response:
    return Response.json(status, {"error": message, **extra})


def not_found() -> Response:
    return error(404, "Not Found")


# ================================================================== router


class Router:
    """The HTTP handler: faults first, then the endpoint, then the request log."""

    def __init__(self, state: DevState) -> None:
        self.state = state

    async def __call__(self, request: Request) -> Response | None:
        if request.path.startswith("/_dev/"):
            answer = admin(self.state, request)
            self.state.log_request(request.method, request.path, answer.status)
            return answer
        route = fault_route(request.path)
        if route == "complete":
            _note_completion_attempt(self.state, request)
        try:
            response = await self._respond(request, self.state.faults.pick(route))
        except Exception as exc:  # a dev-server bug: say so rather than hang up
            response = error(500, f"dev server error: {exc!r}")
        status = response.status if response is not None else 0
        self.state.log_request(request.method, request.path, status)
        return response

    async def _respond(self, request: Request, fault: Fault | None) -> Response | None:
        if fault is not None:
            if fault.kind == "status":
                return _fault_status(fault)
            if fault.kind == "drop":
                return None
            if fault.kind == "garbage":
                return Response(200, fault.body.encode(), content_type="text/html")
            if fault.kind == "delay":
                await asyncio.sleep(fault.seconds)
        with self.state.lock:
            self.state.reap()
            response = dispatch(self.state, request)
        if fault is not None and fault.kind == "drop_after_commit":
            return None  # committed above; the answer is "lost"
        return response


def fault_route(path: str) -> str:
    """The fault-injection name of a path: poll, heartbeat, complete, trigger or other."""
    if path == "/api/workers/poll":
        return "poll"
    if path == "/api/workers/heartbeat":
        return "heartbeat"
    if path == "/api/workers/complete" or _COMPLETE_WATCHER.match(path):
        return "complete"
    if _TRIGGER.match(path) or _MANAGE_WATCHERS.match(path):
        return "trigger"
    return "other"


def _fault_status(fault: Fault) -> Response:
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = f"{fault.retry_after:g}"  # may be fractional, e.g. "0.35"
    try:
        phrase = HTTPStatus(fault.status).phrase
    except ValueError:
        phrase = "Error"
    return Response.json(fault.status, {"error": f"{phrase} (injected fault)"}, headers)


def _note_completion_attempt(state: DevState, request: Request) -> None:
    match = _COMPLETE_WATCHER.match(request.path)
    if match:
        run_id = _digits(match.group(1))
    else:
        body = _json_object(request)
        run_id = _digits(str(body.get("run_id"))) if body is not None else None
    with state.lock:
        run = state.find_run(run_id) if run_id is not None else None
        if run is not None:
            run.completion_attempts += 1


def dispatch(state: DevState, request: Request) -> Response:
    """Route one /api request (the caller holds the state lock)."""
    path, method = request.path, request.method
    if path == "/api/local-init":
        return local_init(state, request) if method == "POST" else not_found()
    if path.startswith("/api/workers/"):
        return _worker_api(state, request)
    handler = _user_route(request)
    if handler is None:
        return not_found()
    caller = authenticate(state, request, anonymous_ok=False)
    if isinstance(caller, Response):
        return caller
    return handler(state, caller, request)


def authenticate(state: DevState, request: Request, *, anonymous_ok: bool) -> Caller | Response:
    header = (request.header("authorization") or "").strip()
    if not header:
        # A real local server would let this through as a trusted anonymous
        # worker; the dev server refuses unless told otherwise (§11.2).
        return Caller(None) if anonymous_ok else error(401, "Unauthorized")
    scheme, _, value = header.partition(" ")
    record = state.token(value.strip()) if scheme.lower() == "bearer" else None
    if record is None:
        return error(401, "invalid_token", error_description="Invalid or expired access token")
    return Caller(record)


def _worker_api(state: DevState, request: Request) -> Response:
    caller = authenticate(state, request, anonymous_ok=state.allow_anonymous)
    if isinstance(caller, Response):
        return caller
    if caller.token is not None:
        if not _allowed_for_user_worker(request.path):
            return error(403, "Endpoint not available to user-scoped workers")
        if not caller.token.scopes & WORKER_SCOPES:
            return error(403, "Worker token missing device_worker:run scope")
    handler = _worker_route(request)
    if handler is None:
        return not_found()
    return handler(state, caller, request)


def _allowed_for_user_worker(path: str) -> bool:
    return (
        path in _USER_WORKER_PATHS
        or path.startswith(_USER_WORKER_PREFIXES)
        or any(pattern.match(path) for pattern in _USER_WORKER_PATTERNS)
    )


def _worker_route(request: Request) -> Handler | None:
    if request.method != "POST":
        return None
    simple: dict[str, Handler] = {
        "/api/workers/poll": poll,
        "/api/workers/heartbeat": heartbeat,
        "/api/workers/complete": complete_generic,
    }
    if request.path in simple:
        return simple[request.path]
    if match := _COMPLETE_WATCHER.match(request.path):
        return partial(complete_watcher, run_id_text=match.group(1))
    if match := _TRIGGER.match(request.path):
        return partial(trigger, watcher_id_text=match.group(1))
    return None


def _user_route(request: Request) -> Handler | None:
    key = (request.method, request.path)
    if key == ("GET", "/api/me/devices"):
        return list_devices
    if key == ("POST", "/api/me/devices/mint-child-token"):
        return mint_child_token
    match = _MANAGE_WATCHERS.match(request.path)
    if request.method == "POST" and match:
        return partial(manage_watchers, org_slug=match.group(1))
    return None


# ==================================================================== poll


def poll(state: DevState, caller: Caller, request: Request) -> Response:
    body = _json_object(request)
    if body is None:
        return error(400, INVALID_BODY)
    if caller.token is None:
        # An anonymous worker registers no device and claims only server-side
        # lanes, which the dev server does not have.
        return Response.json(200, {"next_poll_seconds": state.next_poll_seconds})
    worker_id = body.get("worker_id")
    if not isinstance(worker_id, str) or not worker_id:
        return error(400, "worker_id is required")
    bound = caller.bound_worker_id
    if bound and bound != worker_id:
        return _worker_id_mismatch(bound)
    platform = _opt_str(body.get("platform"))
    known = state.find_device(worker_id)
    if known and known.platform and platform and platform != known.platform:
        return error(
            403,
            "platform_mismatch",
            error_description=f"worker is bound to platform '{known.platform}'",
        )
    device = _upsert_device(state, worker_id, platform, body)
    run = state.claim_next(device, worker_id)
    if run is None:
        return Response.json(200, {"next_poll_seconds": state.next_poll_seconds})
    return Response.json(200, _claim_answer(state, run))


def _upsert_device(
    state: DevState, worker_id: str, platform: str | None, body: dict[str, Any]
) -> DeviceRecord:
    device = state.ensure_device(worker_id)
    device.platform = device.platform or platform  # set once, on the first poll
    device.app_version = _opt_str(body.get("app_version"))
    capabilities = body.get("capabilities")
    device.capabilities = dict(capabilities) if isinstance(capabilities, dict) else {}
    device.label = _opt_str(body.get("label")) or device.label
    device.last_seen_at = state.now()
    device.polls += 1
    return device


def _claim_answer(state: DevState, run: RunRecord) -> dict[str, Any]:
    if run.raw:
        payload = copy.deepcopy(run.raw_payload)
    else:
        approved = copy.deepcopy(run.approved_input)
        watcher = state.find_watcher(run.watcher_id) if run.watcher_id is not None else None
        payload = {
            "watcher": _watcher_json(watcher, run, approved),
            "event": {
                "trigger_event_id": None,
                "fired_at": iso(run.created_at),
                "payload": approved,
            },
            "context": {"device": {"worker_id": run.device_id}, "user": {"user_id": state.user.id}},
        }
    return {
        "run_id": run.id,
        "run_type": run.run_type,
        "organization_id": state.org.id,
        "payload": payload,
    }


def _watcher_json(
    watcher: WatcherRecord | None, run: RunRecord, approved: dict[str, Any]
) -> dict[str, Any]:
    kind = approved.get("agent_kind")
    kind = kind.strip() if isinstance(kind, str) and kind.strip() else None
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


# =============================================================== heartbeat


def _body_and_run_id(
    state: DevState, caller: Caller, request: Request
) -> tuple[dict[str, Any], int] | Response:
    """The shared checks of heartbeat and /complete, which (unlike complete-watcher) have no
    400 for a malformed body: the real handlers answer 500."""
    body = _json_object(request)
    if body is None:
        return error(500, MALFORMED_JSON)
    run_id = _run_id_param(body)
    if isinstance(run_id, Response):
        return run_id
    denied = _authorize_run(state, caller, run_id, body.get("worker_id"))
    if denied is not None:
        return denied
    return body, run_id


def heartbeat(state: DevState, caller: Caller, request: Request) -> Response:
    checked = _body_and_run_id(state, caller, request)
    if isinstance(checked, Response):
        return checked
    _, run_id = checked
    run = state.find_run(run_id)
    if run is not None:  # an anonymous worker may name any id
        run.last_heartbeat_at = state.now()
        run.heartbeats += 1
    return Response.json(200, {"continue": True})


def _authorize_run(state: DevState, caller: Caller, run_id: int, worker_id: Any) -> Response | None:
    """May this caller touch this run? Same order as the real `authorizeRunForWorker`."""
    if caller.token is None:
        return None  # trusted anonymous worker: anything goes
    run = state.find_run(run_id)
    if run is None:
        return error(404, "Run not found")
    if run.status != "running":
        return error(409, NOT_IN_PROGRESS)
    if not isinstance(worker_id, str) or not worker_id.strip():
        return error(400, "worker_id is required")
    if run.claimed_by != worker_id:
        return error(403, "Forbidden")
    return None


# ============================================================== completion


def complete_watcher(
    state: DevState, caller: Caller, request: Request, *, run_id_text: str
) -> Response:
    run_id = _digits(run_id_text)
    if run_id is None or run_id <= 0:
        return error(400, "Invalid runId")
    if run_id > PG_BIGINT_MAX:
        return error(500, f'value "{run_id}" is out of range for type bigint')
    body = _json_object(request)
    if body is None:
        return error(400, INVALID_BODY)
    worker_id = body.get("worker_id")
    denied = _authorize_run(state, caller, run_id, worker_id)
    if denied is not None:
        return denied
    run = state.find_run(run_id)
    if run is None:
        return error(404, "Run not found")
    if run.run_type != "watcher":
        return error(409, "Not a watcher run")
    if run.watcher_id is None:
        return error(500, "Watcher run missing watcher_id")
    denied = _check_device_binding(state, caller, run, worker_id)
    if denied is not None:
        return denied
    window = _validate_window(run.approved_input, iso(state.now()))
    if isinstance(window, str):
        _fail_malformed(state, run, window)
        return error(400, window)
    if run.status != "running":
        # Only an anonymous caller or a truly concurrent duplicate gets here (§11.1).
        return Response.json(200, {"ok": True, "status": run.status, "idempotent": True})
    explicit = run.approved_input.get("window_start") is not None
    return _record_completion(state, run, body, window[0] if explicit else None)


def _check_device_binding(
    state: DevState, caller: Caller, run: RunRecord, worker_id: Any
) -> Response | None:
    if caller.token is None:
        return None
    bound = caller.bound_worker_id
    if bound and bound != worker_id:
        return _worker_id_mismatch(bound)
    pinned = run.approved_input.get("device_worker_id")
    if not isinstance(pinned, str):
        return None
    who = bound or worker_id
    device = state.find_device(who) if isinstance(who, str) else None
    if device is None or device.id != pinned:
        return error(403, "Forbidden: device worker mismatch")
    return None


def _validate_window(approved: dict[str, Any], now: str) -> tuple[str, str] | str:
    """(start, end), or the error message. A missing bound falls back to now."""
    bounds = []
    for key in ("window_start", "window_end"):
        raw = approved.get(key)
        if raw is None:
            bounds.append(now)
        elif not isinstance(raw, str):
            return f"approved_input.{key} must be an ISO timestamp string"
        elif not _parses_as_time(raw):
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


def _record_completion(
    state: DevState, run: RunRecord, body: dict[str, Any], window_start: str | None
) -> Response:
    """Store a report. `window_start` None: the run had none (the server used "now")."""
    error_text = body.get("error")
    failed = isinstance(error_text, str) and error_text.strip() != ""
    exit_code = _exit_code(body.get("exit_code"))
    window_key = _window_key(state, run, window_start)
    if not failed and window_key is not None and state.has_window(*window_key):
        return error(500, DUPLICATE_WINDOW)  # the run stays running (§11.7)
    if isinstance(exit_code, Response):
        return exit_code  # the transaction rolled back: nothing changed
    output = body.get("output") if isinstance(body.get("output"), str) else ""
    run.exit_code = exit_code
    run.exit_signal = _opt_text(body.get("exit_signal"))
    run.duration_ms = _duration(body.get("duration_ms"))
    run.completed_at = state.now()
    run.completions_committed += 1
    if failed:
        run.status = "failed"
        run.error = str(error_text)
        run.output = None  # the server drops the output of a failed run
        run.exit_reason = _opt_text(body.get("exit_reason")) or "error_message"
    else:
        if window_key is not None:
            state.record_window(*window_key)
        run.status = "completed"
        run.error = None
        run.output = output
        run.exit_reason = _opt_text(body.get("exit_reason")) or "ok"
        run.extracted_data = {
            "kind": "device_cli_output",
            "output": output,
            "agent_kind": _trimmed(run.approved_input.get("agent_kind")),
        }
    _touch_watcher(state, run)
    return Response.json(200, {"ok": True, "status": run.status})


def _window_key(
    state: DevState, run: RunRecord, window_start: str | None
) -> tuple[int, str] | None:
    # Only a real watcher's explicit window can collide: a "now" fallback or a
    # raw run without a watcher would only trip tests that freeze the clock.
    if window_start is None or run.watcher_id is None or state.find_watcher(run.watcher_id) is None:
        return None
    return run.watcher_id, window_start


def _touch_watcher(state: DevState, run: RunRecord) -> None:
    watcher = state.find_watcher(run.watcher_id) if run.watcher_id is not None else None
    if watcher is not None:
        watcher.last_fired_at = state.now()


def complete_generic(state: DevState, caller: Caller, request: Request) -> Response:
    """POST /api/workers/complete: the non-watcher lanes' completion (`status`, `error_message`)."""
    checked = _body_and_run_id(state, caller, request)
    if isinstance(checked, Response):
        return checked
    body, run_id = checked
    run = state.find_run(run_id)
    if run is not None:
        run.status = "failed" if body.get("status") == "failed" else "completed"
        run.error = _opt_text(body.get("error_message"))
        run.completed_at = state.now()
        run.completions_committed += 1
    return Response.json(200, {"success": True})


# ================================================================= trigger


def trigger(state: DevState, caller: Caller, request: Request, *, watcher_id_text: str) -> Response:
    watcher_id = _digits(watcher_id_text)
    if watcher_id is None or watcher_id <= 0:
        return error(400, "Invalid watcher_id")
    if caller.token is None:
        return error(403, "Endpoint is user-scoped only")
    bound = caller.bound_worker_id
    if not bound:
        return error(403, "Token is not bound to a device worker")
    device = state.find_device(bound)
    if device is None:
        return error(404, "Device not registered yet — poll first")
    watcher = state.find_watcher(watcher_id)
    if watcher is None:
        return error(404, "Watcher not found")
    if watcher.device_id != device.id:
        return error(403, "Watcher is not pinned to this device")
    if watcher.status != "active":
        return error(409, "Watcher is not active")
    if not watcher.agent_id:
        return error(409, "Watcher has no agent assigned")
    run, created = state.enqueue_manual(watcher)
    return Response.json(
        200,
        {
            "run_id": run.id,
            "status": run.status,
            "already_queued": not created,
            "queued_at": iso(state.now()),
        },
    )


def manage_watchers(
    state: DevState, caller: Caller, request: Request, *, org_slug: str
) -> Response:
    """The tool proxy's `manage_watchers`; only `action: "trigger"` (error texts inferred)."""
    if org_slug != state.org.slug:
        return error(404, f"Organization '{org_slug}' not found")
    body = _json_object(request)
    if body is None:
        return error(400, INVALID_BODY)
    if body.get("action") != "trigger":
        return error(
            400, f"Unsupported action {body.get('action')!r}: the dev server has only 'trigger'"
        )
    raw_id = body.get("watcher_id")
    watcher_id = _digits(str(raw_id)) if isinstance(raw_id, int | str) else None
    watcher = state.find_watcher(watcher_id) if watcher_id is not None else None
    if watcher is None:
        return error(404, f"Watcher {raw_id} not found.")
    if watcher.status != "active":
        return error(400, f"Watcher {watcher.id} is not active.")
    if not watcher.agent_id:
        return error(400, f"Watcher {watcher.id} is not assigned to a Lobu agent.")
    run, _created = state.enqueue_manual(watcher)
    return Response.json(
        200,
        {
            "action": "trigger",
            "watcher_id": str(watcher.id),
            "run_id": run.id,
            "status": run.status,
        },
    )


# =========================================================== user & devices


def local_init(state: DevState, request: Request) -> Response:
    if not (request.header("x-lobu-client") or "").strip():
        return error(403, "missing_client_header")
    token = state.add_token(LOCAL_INIT_SCOPES)  # every call mints another PAT (§11.6)
    return Response.json(
        200,
        {
            "session_token": secrets.token_urlsafe(32),
            "cookie_name": "better-auth.session_token",
            "device_token": token,
            "device_token_scope": LOCAL_INIT_SCOPES,
            "user": {"id": state.user.id, "email": state.user.email, "name": state.user.name},
            "organization": {"id": state.org.id, "slug": state.org.slug, "name": state.org.name},
        },
    )


def list_devices(state: DevState, caller: Caller, request: Request) -> Response:
    devices = sorted(state.live_devices(), key=lambda d: d.last_seen_at or 0.0, reverse=True)
    return Response.json(200, {"devices": [_device_json(state, d) for d in devices]})


def _device_json(state: DevState, device: DeviceRecord) -> dict[str, Any]:
    seen = device.last_seen_at
    return {
        "id": device.id,
        "worker_id": device.worker_id,
        "platform": device.platform,
        "app_version": device.app_version,
        "capabilities": sorted(k for k, v in device.capabilities.items() if v is True),
        "label": device.label,
        "last_seen_at": iso(seen) if seen is not None else None,
        "online": seen is not None and state.now() - seen < ONLINE_WINDOW_SECONDS,
        "organization_id": state.org.id,
        "organization_name": state.org.name,
        "organization_slug": state.org.slug,
        "connector_count": 0,
        "connector_error_count": 0,
        "last_sync_at": None,
        "connectors": [],
    }


def mint_child_token(state: DevState, caller: Caller, request: Request) -> Response:
    """POST /api/me/devices/mint-child-token: a PAT bound to one worker_id."""
    assert caller.token is not None
    if "device_worker:run" not in caller.token.scopes:
        return error(403, "insufficient_scope", required="device_worker:run")
    body = _json_object(request)
    if body is None:
        return error(400, INVALID_BODY)
    platform = str(body.get("platform") or "").strip()
    if not platform:
        return error(400, "platform is required")
    if platform not in CHILD_PLATFORMS:
        return error(400, f"platform '{platform}' is not eligible for child-token mint")
    requested = str(body.get("worker_id") or "").strip()
    if requested and not WORKER_ID_RE.match(requested):
        return error(
            400,
            "invalid_worker_id",
            error_description=(
                "worker_id must be 1-128 characters of letters, digits, dot, underscore,"
                " colon, or hyphen"
            ),
        )
    worker_id, reused = _child_identity(state, requested, platform)
    bound = caller.bound_worker_id
    if bound and (requested != bound or not reused):
        return Response.json(403, CHILD_SELF_MINT_ONLY)
    label = str(body.get("label") or "").strip() or None
    device = state.ensure_device(worker_id)
    device.platform = device.platform or platform
    device.label = device.label or label
    state.revoke_bound_tokens(worker_id)  # a re-mint rotates: the old child PAT dies
    token = state.add_token("device_worker:run", bound_worker_id=worker_id)
    return Response.json(
        200,
        {
            "worker_id": worker_id,
            "access_token": token,
            "expires_at": None,  # dev PATs never expire
            "session_token": None,
            "gateway_url": f"http://{request.header('host') or 'localhost'}",
            "label": label,
            "platform": platform,
        },
    )


def _child_identity(state: DevState, requested: str, platform: str) -> tuple[str, bool]:
    """The worker_id a mint binds to, and whether it re-uses the caller's device."""
    if not requested:
        return _fresh_worker_id(), False
    existing = state.find_device(requested)
    if existing is None:
        return requested, False
    if existing.platform in (None, platform):
        return requested, True
    return _fresh_worker_id(), False  # same id on another platform stays isolated


def _fresh_worker_id() -> str:
    return str(uuid.uuid4())


# ================================================================== admin


def admin(state: DevState, request: Request) -> Response:
    """/_dev/*: unauthenticated helpers for a human playing with `device-agent dev-server`."""
    if (request.method, request.path) == ("GET", "/_dev/state"):
        return Response.json(200, state.snapshot_json())
    body = _json_object(request) if request.body else {}
    if body is None:
        return error(400, INVALID_BODY)
    try:
        if (request.method, request.path) == ("POST", "/_dev/watchers"):
            return Response.json(200, {"watcher_id": state.add_watcher(**body)})
        match = _DEV_WATCHER_RUNS.match(request.path)
        if request.method == "POST" and match:
            return Response.json(200, {"run_id": state.queue_run(match.group(1), **body)})
    except KeyError:
        return error(404, "Watcher not found")
    except (TypeError, ValueError) as exc:
        return error(400, str(exc))
    return not_found()


# ================================================================ helpers


def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        value = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _run_id_param(body: dict[str, Any]) -> int | Response:
    """`run_id` as the database would take it; garbage fails like a failed query (500)."""
    if "run_id" not in body:
        return error(500, "UNDEFINED_VALUE: Undefined values are not allowed")
    value = body["run_id"]
    if value is None:
        return 0  # `WHERE id = NULL` matches nothing
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str):
        number = _digits(value)
    if number is None:
        return error(500, f'invalid input syntax for type bigint: "{_pg_text(value)}"')
    if number > PG_BIGINT_MAX:
        return error(500, f'value "{number}" is out of range for type bigint')
    return number


def _exit_code(value: Any) -> int | Response | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**31:
        return value
    return error(500, f'invalid input syntax for type integer: "{_pg_text(value)}"')


def _pg_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _digits(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _duration(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return max(0, math.floor(value))


def _parses_as_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _opt_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _trimmed(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _worker_id_mismatch(bound: str) -> Response:
    return error(
        403, "worker_id_mismatch", error_description=f"this token is bound to worker_id '{bound}'"
    )
