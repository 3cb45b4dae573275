"""Login and devices: OAuth discovery and endpoints, `local-init`, the user's
devices and the worker-bound child token.

See docs/protocol.md, "Authentication and login" and "Identities".
"""

from __future__ import annotations

import html
import re
import secrets
import uuid
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qs

from device_agent.devserver.http import Request, Response
from device_agent.devserver.oauth import (
    ACCESS_TOKEN_LIFETIME_SECONDS,
    DEVICE_CODE_GRANT,
    OAuthError,
)
from device_agent.devserver.state import (
    LOCAL_INIT_SCOPES,
    ONLINE_WINDOW_SECONDS,
    DeviceRecord,
    DevState,
    iso,
)
from device_agent.devserver.wire import INVALID_BODY, Caller, error, json_object

CHILD_TOKEN_LIFETIME_SECONDS: Final = 90 * 24 * 3600
CHILD_PLATFORMS: Final = frozenset({"macos", "chrome-extension", "headless"})
CHILD_PLATFORMS_1_6: Final = frozenset({"chrome-extension"})  # Lobu 1.6.0 (seen)
CHILD_SELF_MINT_ONLY: Final = {
    "error": "insufficient_scope",
    "error_description": (
        "a device child token can only re-mint its own worker_id, not mint new device credentials"
    ),
}
WORKER_ID_RE: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

PublicHandler = Callable[[DevState, Request], Response]
UserHandler = Callable[[DevState, Caller, Request], Response]


def public_route(request: Request) -> PublicHandler | None:
    """The routes that need no token."""
    routes: dict[tuple[str, str], PublicHandler] = {
        ("POST", "/api/local-init"): local_init,
        ("GET", "/.well-known/oauth-authorization-server"): discovery,
        ("POST", "/oauth/register"): register,
        ("POST", "/oauth/device_authorization"): device_authorization,
        ("POST", "/oauth/token"): token,
        ("POST", "/oauth/revoke"): revoke,
        ("GET", "/oauth/device"): verification_page,
        ("POST", "/oauth/device"): verification_answer,
    }
    return routes.get((request.method, request.path))


def user_route(request: Request) -> UserHandler | None:
    """The user-token routes of this area."""
    routes: dict[tuple[str, str], UserHandler] = {
        ("GET", "/api/me/devices"): list_devices,
        ("POST", "/api/me/devices/mint-child-token"): mint_child_token,
    }
    return routes.get((request.method, request.path))


# ================================================================== OAuth


def origin(request: Request) -> str:
    return f"http://{request.header('host') or 'localhost'}"


def discovery(state: DevState, request: Request) -> Response:
    """RFC 8414 metadata: only the endpoints the dev server has (all of them real)."""
    base = origin(request)
    return Response.json(
        200,
        {
            "issuer": base,
            "token_endpoint": f"{base}/oauth/token",
            "registration_endpoint": f"{base}/oauth/register",
            "revocation_endpoint": f"{base}/oauth/revoke",
            "device_authorization_endpoint": f"{base}/oauth/device_authorization",
            "grant_types_supported": ["refresh_token", DEVICE_CODE_GRANT],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["mcp:read", "mcp:write", "profile:read"],
        },
        headers={"Cache-Control": "no-store"},
    )


def register(state: DevState, request: Request) -> Response:
    metadata = json_object(request)
    if metadata is None:
        return _oauth_error(OAuthError("invalid_request", "Invalid JSON body"))
    try:
        client = state.oauth.register(metadata)
    except OAuthError as exc:
        return _oauth_error(exc)
    return Response.json(
        201,
        {
            "client_id": client.client_id,
            "client_name": client.client_name,
            "grant_types": client.grant_types,
            "token_endpoint_auth_method": "none",
            "scope": client.scope,
        },
    )


def device_authorization(state: DevState, request: Request) -> Response:
    params = _form_or_json(request)
    if params is None:
        return _oauth_error(OAuthError("invalid_request", "Invalid request body"))
    try:
        code = state.oauth.start_device_flow(
            params.get("client_id"), params.get("scope"), state.now()
        )
    except OAuthError as exc:
        return _oauth_error(exc)
    verification_uri = f"{origin(request)}/oauth/device"
    return Response.json(
        200,
        {
            "device_code": code.device_code,
            "user_code": code.user_code,
            "verification_uri": verification_uri,
            "verification_uri_complete": f"{verification_uri}?user_code={code.user_code}",
            "expires_in": round(code.expires_at - state.now()),
            "interval": code.interval,
        },
    )


def token(state: DevState, request: Request) -> Response:
    params = _form_or_json(request)
    if params is None:
        return _oauth_error(OAuthError("invalid_request", "Invalid request body"))
    grant_type = params.get("grant_type")
    try:
        if grant_type == DEVICE_CODE_GRANT:
            code = state.oauth.exchange_device_code(params, state.now())
            return _issue(state, code.client_id, code.scope)
        if grant_type == "refresh_token":
            # Every refresh rotates: the presented refresh token dies here.
            old = state.oauth.rotate_refresh_token(params, state.now())
            return _issue(state, old.client_id, old.scope)
    except OAuthError as exc:
        return _oauth_error(exc)
    unsupported = OAuthError("unsupported_grant_type", f"Unsupported grant_type {grant_type!r}")
    return _oauth_error(unsupported)


def _issue(state: DevState, client_id: str, scope: str) -> Response:
    access = state.add_token(
        scope,
        token=secrets.token_urlsafe(32),
        expires_in=ACCESS_TOKEN_LIFETIME_SECONDS,
        oauth_client_id=client_id,
    )
    refresh = state.oauth.new_refresh_token(client_id, scope, state.now())
    return Response.json(
        200,
        {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME_SECONDS,
            "refresh_token": refresh,
            "scope": scope,
        },
    )


def revoke(state: DevState, request: Request) -> Response:
    """RFC 7009: 200 whether or not the token was live (the answer body is inferred).

    Revokes an OAuth access token (for the client it was issued to), a refresh token, and a
    device's child PAT (minted by `mint-child-token`, bound to its worker_id) — what a
    device's `logout` asks for. Other PATs (local-init's, the web app's) stay: they are
    revoked in the web app."""
    params = _form_or_json(request)
    if params is None:
        return _oauth_error(OAuthError("invalid_request", "Invalid request body"))
    value, client_id = params.get("token"), params.get("client_id")
    if not isinstance(value, str) or not value:
        return _oauth_error(OAuthError("invalid_request", "Missing token"))
    with state.lock:
        record = state.token(value)
        if record is not None and record.oauth_client_id is not None:
            if record.oauth_client_id == client_id:
                state.revoke_token(value)
        elif record is not None and record.bound_worker_id is not None:
            state.revoke_token(value)  # a device's child PAT: `logout` on that device
        else:
            state.oauth.revoke_refresh_token(value, client_id)
    return Response.json(200, {})


def verification_page(state: DevState, request: Request) -> Response:
    """Where `verification_uri` points: approve or deny a user code (no login: one user)."""
    user_code = html.escape(parse_qs(request.query).get("user_code", [""])[0])
    page = f"""<!doctype html><title>Device login</title>
<h1>Authorize a device</h1>
<form method="post" action="/oauth/device">
<label>Code <input name="user_code" value="{user_code}"></label>
<button name="action" value="approve">Approve</button>
<button name="action" value="deny">Deny</button>
</form>"""
    return Response(200, page.encode(), content_type="text/html; charset=utf-8")


def verification_answer(state: DevState, request: Request) -> Response:
    params = _form_or_json(request) or {}
    user_code = str(params.get("user_code") or "").strip().upper()
    approve = params.get("action") != "deny"
    if not state.oauth.decide(user_code, approve, state.now()):
        return _oauth_error(OAuthError("invalid_grant", "Invalid or expired user code"))
    word = "approved" if approve else "denied"
    return Response(200, f"<p>Device {word}.</p>".encode(), content_type="text/html")


def _form_or_json(request: Request) -> dict[str, Any] | None:
    if "application/x-www-form-urlencoded" in (request.header("content-type") or ""):
        form = parse_qs(request.body.decode("utf-8", errors="replace"))
        return {key: values[-1] for key, values in form.items()}
    return json_object(request)


def _oauth_error(exc: OAuthError) -> Response:
    return Response.json(exc.status, exc.body())


# ============================================================ local-init


def local_init(state: DevState, request: Request) -> Response:
    if not (request.header("x-lobu-client") or "").strip():
        return error(403, "missing_client_header")
    device_token = state.add_token(LOCAL_INIT_SCOPES)  # every call mints another PAT
    return Response.json(
        200,
        {
            "session_token": secrets.token_urlsafe(32),
            "cookie_name": "better-auth.session_token",
            "device_token": device_token,
            "device_token_scope": LOCAL_INIT_SCOPES,
            "user": {"id": state.user.id, "email": state.user.email, "name": state.user.name},
            "organization": {"id": state.org.id, "slug": state.org.slug, "name": state.org.name},
        },
    )


# =============================================================== devices


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
    """POST /api/me/devices/mint-child-token: a 90-day PAT bound to one worker_id."""
    assert caller.token is not None
    if "device_worker:run" not in caller.token.scopes:
        return error(403, "insufficient_scope", required="device_worker:run")
    body = json_object(request)
    if body is None:
        return error(400, INVALID_BODY)
    platform = str(body.get("platform") or "").strip()
    if not platform:
        return error(400, "platform is required")
    lobu_1_6 = state.child_tokens == "1.6.0"
    if platform not in (CHILD_PLATFORMS_1_6 if lobu_1_6 else CHILD_PLATFORMS):
        return error(400, f"platform '{platform}' is not eligible for child-token mint")
    # Lobu 1.6.0 ignores the worker_id asked for: every mint makes a device of its own.
    requested = "" if lobu_1_6 else str(body.get("worker_id") or "").strip()
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
    state.device_signed_in(worker_id)  # the dev server's samples may move to it
    state.revoke_bound_tokens(worker_id)  # a re-mint rotates: the old child PAT dies
    lifetime = None if lobu_1_6 else CHILD_TOKEN_LIFETIME_SECONDS  # 1.6.0's never expire
    child = state.add_token("device_worker:run", bound_worker_id=worker_id, expires_in=lifetime)
    return Response.json(
        200,
        {
            "worker_id": worker_id,
            "access_token": child,
            "expires_at": None if lifetime is None else iso(state.now() + lifetime),
            "session_token": None,
            "gateway_url": origin(request),
            "label": label,
            "platform": platform,
        },
    )


def _child_identity(state: DevState, requested: str, platform: str) -> tuple[str, bool]:
    """The worker_id a mint binds to, and whether it re-uses the caller's device."""
    if not requested:
        return str(uuid.uuid4()), False
    existing = state.find_device(requested)
    if existing is None:
        return requested, False
    if existing.platform in (None, platform):
        return requested, True
    return str(uuid.uuid4()), False  # same id on another platform stays isolated
