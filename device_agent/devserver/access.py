"""Who may do what: the bearer token, the `/api/workers/*` allowlist for
user-scoped tokens, and whether a caller may touch a run.

See docs/protocol.md, "Authentication and login".
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Final

from device_agent.devserver.http import Request, Response
from device_agent.devserver.state import (
    AutomationRecord,
    DeviceRecord,
    DevState,
    RunRecord,
    WatcherRecord,
    iso,
)
from device_agent.devserver.wire import (
    INVALID_BODY,
    NOT_IN_PROGRESS,
    Caller,
    error,
    js_parse_error,
    json_object,
    path_id,
    run_id_param,
    worker_id_mismatch,
)

WORKER_SCOPES: Final = frozenset({"device_worker:run", "mcp:write", "mcp:admin"})
SESSION_LIFETIME_SECONDS: Final = 2 * 3600

# The /api/workers/* middleware lets a user-scoped token reach only these;
# which lane's routes exist depends on the server's era.
_USER_WORKER_PATHS: Final = frozenset(
    {"/api/workers/poll", "/api/workers/heartbeat", "/api/workers/stream", "/api/workers/complete"}
)
_USER_WORKER_PREFIXES: Final = ("/api/workers/me/auth-profiles", "/api/workers/me/feeds")
_LANE_PATTERNS: Final = {
    "watcher": (
        re.compile(r"^/api/workers/me/runs/\d+/complete-watcher$"),
        re.compile(r"^/api/workers/me/watchers/\d+/trigger$"),
    ),
    "automation": (
        re.compile(r"^/api/workers/me/runs/\d+/complete-(automation|chat)$"),
        re.compile(r"^/api/workers/me/automations/\d+/trigger$"),
        re.compile(r"^/api/workers/complete-action$"),
    ),
}


def authenticate(state: DevState, request: Request, *, anonymous_ok: bool) -> Caller | Response:
    header = (request.header("authorization") or "").strip()
    if not header:
        # A real local server would let this through as a trusted anonymous
        # worker; the dev server refuses unless told otherwise.
        return Caller(None) if anonymous_ok else error(401, "Unauthorized")
    scheme, _, value = header.partition(" ")
    record = state.live_token(value.strip()) if scheme.lower() == "bearer" else None
    if record is None:
        return error(401, "invalid_token", error_description="Invalid or expired access token")
    return Caller(record)


def worker_gate(state: DevState, caller: Caller, path: str) -> Response | None:
    """The `/api/workers/*` middleware's refusals for a token-holding caller."""
    if caller.token is None:
        return None
    if not _allowed_for_user_worker(state.lane, path):
        return error(403, "Endpoint not available to user-scoped workers")
    if caller.token.session_run_id is not None or not caller.token.scopes & WORKER_SCOPES:
        # An agent_session token is for the MCP server only.
        return error(403, "Worker token missing device_worker:run scope")
    return None


def _allowed_for_user_worker(lane: str, path: str) -> bool:
    return (
        path in _USER_WORKER_PATHS
        or path.startswith(_USER_WORKER_PREFIXES)
        or any(pattern.match(path) for pattern in _LANE_PATTERNS[lane])
    )


def authorize_run(
    state: DevState, caller: Caller, run_id: int, worker_id: Any, *, terminal_ok: bool = False
) -> Response | None:
    """May this caller touch this run? Same order as the real `authorizeRunForWorker`.

    `terminal_ok`: a finished run is no 409 (the automation exit report, which
    may follow a window the CLI already completed over MCP).
    """
    if caller.token is None:
        return None  # trusted anonymous worker: anything goes
    run = state.find_run(run_id)
    if run is None:
        return error(404, "Run not found")
    if run.status != "running" and not terminal_ok:
        return error(409, NOT_IN_PROGRESS)
    if not isinstance(worker_id, str) or not worker_id.strip():
        return error(400, "worker_id is required")
    if run.status != "running":
        return None
    if run.claimed_by != worker_id:
        return error(403, "Forbidden")
    return None


def report_for_run(
    state: DevState,
    caller: Caller,
    request: Request,
    run_id_text: str,
    *,
    terminal_ok: bool = False,
) -> tuple[RunRecord, dict[str, Any]] | Response:
    """The checks every `/api/workers/me/runs/:runId/complete-*` route starts with:
    the run, and the report's body."""
    run_id = path_id(run_id_text, "Invalid runId")
    if isinstance(run_id, Response):
        return run_id
    body = json_object(request)
    if body is None:
        return error(400, INVALID_BODY)
    denied = authorize_run(state, caller, run_id, body.get("worker_id"), terminal_ok=terminal_ok)
    if denied is not None:
        return denied
    run = state.find_run(run_id)
    if run is None:
        return error(404, "Run not found")
    return run, body


def bound_device(state: DevState, caller: Caller) -> DeviceRecord | Response:
    """The device a "Run now" speaks for: only a worker-bound token has one
    (docs/protocol.md, "Run now")."""
    if caller.token is None:
        return error(403, "Endpoint is user-scoped only")
    bound = caller.bound_worker_id
    if not bound:
        return error(403, "Token is not bound to a device worker")
    device = state.find_device(bound)
    if device is None:
        return error(404, "Device not registered yet — poll first")
    return device


def refuse_run_now(
    record: WatcherRecord | AutomationRecord | None, device: DeviceRecord, noun: str
) -> Response | None:
    """Why this watcher/automation ("Watcher"/"Automation") cannot be run now, if it cannot."""
    if record is None:
        return error(404, f"{noun} not found")
    if record.device_id != device.id:
        return error(403, f"{noun} is not pinned to this device")
    if record.status != "active":
        return error(409, f"{noun} is not active")
    return None


def check_device_binding(
    state: DevState, caller: Caller, run: RunRecord, worker_id: Any
) -> Response | None:
    """A bound token speaks only for its worker; the run's pin must be the caller's device."""
    if caller.token is None:
        return None
    bound = caller.bound_worker_id
    if bound and bound != worker_id:
        return worker_id_mismatch(bound)
    pinned = run.approved_input.get("device_worker_id")
    if not isinstance(pinned, str):
        return None
    who = bound or worker_id
    device = state.find_device(who) if isinstance(who, str) else None
    if device is None or device.id != pinned:
        return error(403, "Forbidden: device worker mismatch")
    return None


def body_and_run_id(
    state: DevState, caller: Caller, request: Request
) -> tuple[dict[str, Any], int] | Response:
    """The shared checks of heartbeat and /complete, which (unlike the lane routes)
    have no 400 for a malformed body: the real handlers answer 500 with the
    parser's own message (docs/protocol.md, "What a real server does")."""
    parse_error = js_parse_error(request.body)
    if parse_error is not None:
        return error(500, parse_error)
    body = json_object(request)
    if body is None:
        return error(500, "UNDEFINED_VALUE: Undefined values are not allowed")
    run_id = run_id_param(body)
    if isinstance(run_id, Response):
        return run_id
    denied = authorize_run(state, caller, run_id, body.get("worker_id"))
    if denied is not None:
        return denied
    return body, run_id


def agent_session(
    state: DevState, run: RunRecord, conversation_id: str | None = None
) -> dict[str, Any]:
    """A per-run MCP credential, accepted only by the MCP stand-in for this run; a chat turn's
    names its conversation."""
    if run.session_token is None:
        run.session_token = state.add_token(
            "mcp:read mcp:write",
            token="owl_ses_" + secrets.token_urlsafe(24),
            expires_in=SESSION_LIFETIME_SECONDS,
            session_run_id=run.id,
        )
    record = state.token(run.session_token)
    expires_at = record.expires_at if record and record.expires_at else state.now()
    return {
        "conversation_id": conversation_id or f"conv_run_{run.id}",
        "mcp_url": f"{state.public_url}/mcp/{state.org.slug}",
        "token": run.session_token,
        "expires_at": iso(expires_at),
    }
