"""The OAuth 2.0 device authorization grant (RFC 8628) against a Lobu server.

See docs/protocol.md, "Authentication and login": discovery, dynamic client registration, the
device code, then polling the token endpoint honouring `interval`, `slow_down` and `expires_in`.
The access token it yields is not durable; login trades it for a worker-bound child token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

import httpx

from device_agent.cli.output import printable
from device_agent.config import is_loopback
from device_agent.identity.errors import AuthRefused, UsageError
from device_agent.identity.http import (
    body_of,
    client_name_of,
    fail,
    send,
    text_field,
)

DEVICE_GRANT: Final = "urn:ietf:params:oauth:grant-type:device_code"
SCOPE: Final = "device_worker:run mcp:read mcp:write profile:read"
SLOW_DOWN_SECONDS: Final = 5.0  # RFC 8628 §3.5
DEFAULT_INTERVAL: Final = 5.0  # RFC 8628 §3.2: when the server names none
DEFAULT_EXPIRES_IN: Final = 900.0
# The server's `interval` and `expires_in` are kept within these bounds: a server asking for
# a poll every microsecond is not obeyed, nor one asking to wait a day between polls or to
# keep a terminal waiting for days. Lobu asks for 5 s and 900 s.
MIN_INTERVAL: Final = 1.0
MAX_INTERVAL: Final = 60.0
MIN_EXPIRES_IN: Final = 60.0
MAX_EXPIRES_IN: Final = 3600.0

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(frozen=True)
class Endpoints:
    registration: str
    device_authorization: str
    token: str
    revocation: str | None = None


@dataclass(frozen=True)
class DeviceCode:
    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


@dataclass(frozen=True)
class OAuthTokens:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_in: float | None = None


async def discover(client: httpx.AsyncClient) -> Endpoints:
    doing = "reading the server's OAuth metadata"
    response = await send(client, "GET", "/.well-known/oauth-authorization-server")
    if response.status_code != 200:
        raise fail(
            response,
            doing,
            fix="this server may not offer device login; use `device-agent login --local` "
            "on a local server, or `--token-stdin` with a token from the web app",
        )
    body = body_of(response)
    origin = _origin(str(client.base_url))
    endpoints = {
        key: _same_origin(text_field(body, f"{key}_endpoint", doing), origin)
        for key in ("registration", "device_authorization", "token")
    }
    revocation = body.get("revocation_endpoint")
    return Endpoints(
        **endpoints,
        revocation=_same_origin(revocation, origin) if isinstance(revocation, str) else None,
    )


async def register(client: httpx.AsyncClient, endpoints: Endpoints) -> str:
    response = await send(
        client,
        "POST",
        endpoints.registration,
        json={
            "client_name": client_name_of(client),
            "grant_types": [DEVICE_GRANT, "refresh_token"],
            "token_endpoint_auth_method": "none",
            "scope": SCOPE,
        },
    )
    if response.status_code not in (200, 201):
        raise fail(response, "registering this agent as an OAuth client", fix=_ASK_ADMIN)
    return text_field(body_of(response), "client_id", "registering this agent")


async def request_device_code(
    client: httpx.AsyncClient, endpoints: Endpoints, client_id: str
) -> DeviceCode:
    doing = "asking for a device code"
    response = await send(
        client,
        "POST",
        endpoints.device_authorization,
        data={"client_id": client_id, "scope": SCOPE},
    )
    if response.status_code != 200:
        raise fail(response, doing, fix=_ASK_ADMIN)
    body = body_of(response)
    complete = body.get("verification_uri_complete")
    return DeviceCode(
        device_code=text_field(body, "device_code", doing),
        user_code=text_field(body, "user_code", doing),
        verification_uri=text_field(body, "verification_uri", doing),
        verification_uri_complete=complete if isinstance(complete, str) and complete else None,
        expires_in=_within(
            _seconds(body.get("expires_in"), DEFAULT_EXPIRES_IN), MIN_EXPIRES_IN, MAX_EXPIRES_IN
        ),
        interval=_within(
            _seconds(body.get("interval"), DEFAULT_INTERVAL), MIN_INTERVAL, MAX_INTERVAL
        ),
    )


MAX_ADDRESS_CHARS: Final = 2048


def sign_in_address(code: DeviceCode) -> str:
    """Where the user signs in: `verification_uri_complete` (it carries the code) when it is a
    web address, else `verification_uri`. The one returned is the one to open and to show.

    The server is untrusted: a browser handed `file:`, `javascript:` or `smb:` would open a
    local file, run script or reach out to a share, and a value starting with `--` would be
    read as an option by the program that opens the browser. So only `https://` addresses,
    or `http://` to this machine, are ever opened or printed as the place to go."""
    for candidate in (code.verification_uri_complete, code.verification_uri):
        if candidate is not None and is_web_address(candidate):
            return candidate
    raise UsageError(
        f"the server's sign-in address {printable(code.verification_uri[:200])!r} is not an "
        "https:// address (nor http:// to this machine), so it was neither opened nor shown; "
        "is this a Lobu server? Check --server, or sign in with a token from the web app "
        "(`device-agent login --token-stdin`)"
    )


def is_web_address(url: str) -> bool:
    """An `https://` URL, or `http://` to a loopback host; visible ASCII only, no user info."""
    if len(url) > MAX_ADDRESS_CHARS or not all("!" <= ch <= "~" for ch in url):
        return False
    if not url.lower().startswith(("https://", "http://")):
        return False
    parts = urlsplit(url)
    try:
        host, _ = parts.hostname, parts.port
    except ValueError:  # a port that is not a number, a broken IPv6 literal
        return False
    if not host or "@" in parts.netloc:  # user info in an address only serves to mislead
        return False
    return parts.scheme.lower() == "https" or is_loopback(host)


async def wait_for_approval(
    client: httpx.AsyncClient,
    endpoints: Endpoints,
    client_id: str,
    code: DeviceCode,
    *,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
) -> OAuthTokens:
    """Poll the token endpoint until the user approves, denies, or the code expires.

    Waits `code.interval` between polls (5 s more after each `slow_down`, never over
    `MAX_INTERVAL`), and never past `code.expires_in`: at that moment it gives up."""
    deadline = clock() + code.expires_in
    interval = code.interval
    while True:
        await sleep(max(0.0, min(interval, deadline - clock())))
        if clock() >= deadline:
            raise _not_approved_in_time(code)
        response = await send(
            client,
            "POST",
            endpoints.token,
            data={
                "grant_type": DEVICE_GRANT,
                "device_code": code.device_code,
                "client_id": client_id,
            },
        )
        if response.status_code == 200:
            body = body_of(response)
            refresh = body.get("refresh_token")
            return OAuthTokens(
                access_token=text_field(body, "access_token", "finishing the device login"),
                refresh_token=refresh if isinstance(refresh, str) else None,
                expires_in=_seconds(body.get("expires_in"), 0.0) or None,
            )
        error = body_of(response).get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval = min(interval + SLOW_DOWN_SECONDS, MAX_INTERVAL)
            continue
        if error == "access_denied":
            raise AuthRefused(
                "the sign-in was denied in the browser; nothing was stored. "
                "Run `device-agent login` again and approve it"
            )
        if error == "expired_token":
            raise _expired(code)
        raise fail(response, "finishing the device login", fix="run `device-agent login` again")


async def revoke(
    client: httpx.AsyncClient,
    endpoints: Endpoints,
    client_id: str | None,
    token: str,
    *,
    hint: str = "access_token",
) -> bool:
    """RFC 7009 revocation (`hint`: "access_token" or "refresh_token"); True when the server
    confirmed it."""
    if endpoints.revocation is None:
        return False
    form = {"token": token, "token_type_hint": hint}
    if client_id:
        form["client_id"] = client_id
    response = await send(client, "POST", endpoints.revocation, data=form)
    return response.status_code == 200


def _expired(code: DeviceCode) -> AuthRefused:
    """The server said the code expired."""
    return AuthRefused(
        f"the code {printable(code.user_code)} expired before it was approved; nothing was "
        f"stored. Run `device-agent login` again and approve it within {_minutes(code)}"
    )


def _not_approved_in_time(code: DeviceCode) -> AuthRefused:
    """The code's lifetime (as bounded here) ran out while waiting."""
    return AuthRefused(
        f"the code {printable(code.user_code)} was not approved within {_minutes(code)}, the "
        "time it is valid for; stopped waiting, nothing was stored. Run `device-agent login` "
        "again and approve it in time"
    )


def _minutes(code: DeviceCode) -> str:
    minutes = max(1, round(code.expires_in / 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


_ASK_ADMIN: Final = (
    "this server may not allow device login for new clients; use `--token-stdin` with a token "
    "from the web app, or ask the server's admin"
)


def _seconds(value: object, default: float) -> float:
    """A positive number of seconds from the server, else `default` (NaN is not positive)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return default


def _within(seconds: float, low: float, high: float) -> float:
    return min(max(seconds, low), high)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _same_origin(url: str, origin: str) -> str:
    """An endpoint on another origin would receive our codes and tokens: refuse it."""
    if url.startswith("/") and not url.startswith("//"):
        return origin + url
    if _origin(url) != origin:
        raise UsageError(
            f"the server's OAuth metadata points to another origin ({_origin(url)}, not {origin}); "
            "refusing to send credentials there. Check --server"
        )
    return url
