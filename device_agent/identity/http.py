"""One way to talk to the account/OAuth API: bounded requests, no redirects, one-line errors.

Every request goes through the agent's one HTTP client (device_agent/server/http.py):
an overall deadline (`account_timeout_seconds`), an answer refused past `ACCOUNT_BODY_CAP`,
no redirect followed (one could carry the bearer to another origin), the bearer to the
configured origin only. Every failure becomes an `AccountError` whose message says what
went wrong and what to do, and whose `exit_code` is the CLI's contract (0 ok, 2
usage/config, 3 authentication, 4 server unreachable).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import httpx

from device_agent import logs
from device_agent.config import Settings
from device_agent.identity.errors import AccountError, AuthRefused, Unreachable, UsageError
from device_agent.server.http import (
    AnswerTooLarge,
    Reply,
    RequestFailed,
    TimedOut,
    connect,
    fetch,
)

TIMEOUT_SECONDS: Final = 15.0
# Every account answer is a small JSON object (a token, OAuth metadata, a device list).
ACCOUNT_BODY_CAP: Final = 256 * 1024
CLIENT_NAME: Final = "device-agent"
CLIENT_HEADER: Final = "X-Lobu-Client"  # who is asking: local-init and mint-child-token need it


def account_client(
    server: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: float = TIMEOUT_SECONDS,
    client_name: str = CLIENT_NAME,
) -> httpx.AsyncClient:
    """The client for account requests to `server`; `timeout` is each request's overall
    deadline (`deadline_of`)."""
    return connect(
        server,
        transport=transport,
        timeout=timeout,
        headers={"Accept": "application/json", CLIENT_HEADER: client_name},
    )


def account_client_for(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The account client as the settings say: server, deadline, the name the agent gives."""
    return account_client(
        settings.origin,
        transport=transport,
        timeout=settings.account_timeout_seconds,
        client_name=settings.client_name,
    )


def client_name_of(client: httpx.AsyncClient) -> str:
    return str(client.headers.get(CLIENT_HEADER, CLIENT_NAME))


def deadline_of(client: httpx.AsyncClient) -> float:
    """The overall deadline of each request of an account client."""
    return client.timeout.read or TIMEOUT_SECONDS


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    bearer: str | None = None,
    json: Mapping[str, Any] | None = None,
    data: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """Send one request and read its answer; a failure becomes `Unreachable` (never with the
    bearer in it). A stop that cancels the calling task cancels the request with it."""
    deadline = deadline_of(client)
    where = str(client.base_url).rstrip("/")
    try:
        return await fetch(
            client,
            method,
            url,
            deadline=deadline,
            cap=ACCOUNT_BODY_CAP,
            bearer=bearer,
            headers=headers,
            json=json,
            data=data,
        )
    except TimedOut:
        raise Unreachable(
            f"{where} did not answer within {deadline:g} s: "
            "check the server URL and your network, then try again"
        ) from None
    except AnswerTooLarge as exc:
        raise Unreachable(
            f"{where} sent an answer too large for an account request ({exc}); "
            "is this a Lobu server? Check the server URL"
        ) from None
    except RequestFailed as exc:
        raise Unreachable(
            f"cannot reach {where} ({exc}): check the server URL and your network, then try again"
        ) from None


def body_of(response: Reply) -> dict[str, Any]:
    """The JSON object of an answer, or {} when the body is not one (the server is untrusted)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def error_text(response: Reply) -> str:
    """The server's own words for a failure: `error_description`, else `error`, else the status."""
    body = body_of(response)
    for key in ("error_description", "error", "message"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return logs.redactor(value[:300])  # a server may echo what it was sent
    return f"HTTP {response.status_code}"


def fail(response: Reply, doing: str, *, fix: str) -> AccountError:
    """Turn an unexpected answer into the right error: 401/403 auth, 5xx unreachable, else usage."""
    status = response.status_code
    said = f"{doing} failed: the server answered {status} {error_text(response)!r}"
    if status in (401, 403):
        return AuthRefused(f"{said}; {fix}", status=status)
    if status >= 500 or status in (408, 429):
        return Unreachable(
            f"{said}; the server has a problem, try again in a minute", status=status
        )
    if 300 <= status < 400:
        location = response.headers.get("location", "?")[:200]
        return UsageError(
            f"{doing} failed: the server redirected to {location!r}; "
            "use the final server URL with --server",
            status=status,
        )
    return UsageError(f"{said}; {fix}", status=status)


def text_field(body: Mapping[str, Any], key: str, doing: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise Unreachable(
            f"{doing}: the server's answer has no {key!r}; is this a Lobu server? "
            "Check --server, or upgrade the server"
        )
    return value
