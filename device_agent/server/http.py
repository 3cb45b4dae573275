"""The agent's one HTTP client: how every request to the Lobu server is made and bounded.

`connect()` builds the `httpx.AsyncClient` of the worker API (`LobuClient`), of the
account requests (login, local-init, rotation, logout, "Run now") and of the per-run
MCP proxy's upstream calls. Whatever the server does, a request made with `fetch()`
(or `stream()`, for an answer relayed as it arrives):

- ends by an overall deadline, `asyncio.timeout` around the whole exchange: httpx's
  timeouts are per read, so a server trickling a byte at a time would otherwise hold
  it for ever;
- reads the answer as a stream and refuses it past `cap` bytes, never buffering more;
- never follows a redirect: a 3xx is an answer like any other, for the caller to read;
- carries an `Authorization` header only to the origin the client was built for: a
  request hook refuses any other before a byte is sent.

httpx itself honours the environment: `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` (SOCKS5
too, through its `socks` extra) and `NO_PROXY`, and `SSL_CERT_FILE`/`SSL_CERT_DIR` for
the CA store (docs/protocol.md, "Authentication and login"). Tests hand `connect()` a
`transport=`, or mock this very client with respx.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import ssl
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from device_agent.errors import ConfigError

CONNECT_TIMEOUT: Final = 10.0
# The most bytes read from an answer unless a route says otherwise (a poll: 4 MiB).
BODY_CAP: Final = 256 * 1024
HEAD_KEPT: Final = 4096  # of an answer refused as too large (`AnswerTooLarge.head`)
# httpx's own limits, but an idle connection is reused for 4 s only: a Node server (Node's
# default keepAliveTimeout) closes it after 5 s, and a request must not race that close.
LIMITS: Final = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=4)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_PROXY_VARIABLES: Final = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")

Origin = tuple[str, str, int]  # scheme, host, port


class RequestFailed(Exception):
    """No usable answer: the server could not be reached, broke off, or took too long.
    The message says which, in words fit for a log line (never with the token)."""

    timed_out = False  # no answer in time: the server may still have acted on the request


class TimedOut(RequestFailed):
    timed_out = True


class AnswerTooLarge(RequestFailed):
    """An answer body past its cap: read no further. `head` is its first bytes (up to
    `HEAD_KEPT`), for a caller that must know what the answer was about: a poll answer
    handing over a run names the run first (docs/protocol.md, "Poll and claim")."""

    def __init__(self, message: str, status: int, head: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.head = head


class OtherOrigin(RequestFailed):
    """A request carrying the token to an origin other than the configured one."""


class ProxyUnusable(ConfigError):
    """The environment names a proxy that httpx cannot use."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole answer, read under its cap."""

    status_code: int
    headers: httpx.Headers
    reason_phrase: str
    content: bytes

    def json(self) -> Any:
        """The decoded body; ValueError for anything undecodable — a body nested 100 000
        deep included, which raises RecursionError in the decoder."""
        try:
            return json.loads(self.content)
        except RecursionError:
            raise ValueError("JSON nested too deep") from None


def connect(
    origin: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> httpx.AsyncClient:
    """The client for requests to `origin` (relative URLs are resolved against it, a path
    included). `timeout`: the per-read timeout of a request that names none.

    Raises `ProxyUnusable` when the environment names a proxy httpx cannot use."""
    home = origin_of(httpx.URL(origin))
    try:
        return httpx.AsyncClient(
            base_url=origin,
            headers=headers,
            verify=_trusted(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")),
            timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
            follow_redirects=False,  # a redirect could carry the token to another host
            limits=LIMITS,
            transport=transport,
            event_hooks={"request": [_token_stays_home(home)]},
        )
    except (ValueError, ImportError):  # a proxy URL httpx cannot use
        named = proxy_variables()
        if not named:
            raise
        raise ProxyUnusable(
            f"the proxy named by {'/'.join(named)} cannot be used: "
            "device-agent speaks to http://, https://, socks5:// and socks5h:// proxies; "
            "fix or unset it, or add the server's host to NO_PROXY"
        ) from None


@functools.cache
def _trusted(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """The CA store clients verify the server with, built once per `SSL_CERT_FILE` and
    `SSL_CERT_DIR` (as httpx reads them), not per client: reading the CA bundle takes ~25 ms,
    and "Run now", rotation and each run's MCP proxy build a client of their own."""
    return httpx.create_ssl_context(trust_env=True)


async def fetch(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    deadline: float,
    cap: int = BODY_CAP,
    read_timeout: float | None = None,
    bearer: str | None = None,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    data: Mapping[str, str] | None = None,
) -> Reply:
    """Send one request and read its whole answer, within `deadline` seconds overall and
    `cap` bytes of body. `read_timeout` bounds each read and write (default: `deadline`).

    Raises `TimedOut`, `AnswerTooLarge` or `RequestFailed`."""
    request = _request(client, method, url, deadline, read_timeout, bearer, headers, json, data)
    try:
        async with asyncio.timeout(deadline):
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                content = await _read_capped(response, cap)
            finally:
                await response.aclose()
    except TimeoutError:  # the overall deadline: a server trickling its answer
        raise TimedOut(f"no whole answer within {deadline:g} s") from None
    except httpx.HTTPError as exc:
        raise _failure(exc, client, bearer) from None
    return Reply(response.status_code, response.headers, response.reason_phrase, content)


@contextlib.asynccontextmanager
async def stream(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    deadline: float,
    cap: int,
    bearer: str | None = None,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
) -> AsyncIterator[Streamed]:
    """An answer whose body the caller reads as it arrives (`Streamed.chunks`): the whole
    exchange, reading included, ends by `deadline`, and the body is refused past `cap`.

    Raises `TimedOut`, `AnswerTooLarge` or `RequestFailed` out of the `async with`."""
    request = _request(client, method, url, deadline, None, bearer, headers, None, None, content)
    try:
        async with asyncio.timeout(deadline):
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                yield Streamed(response, cap)
            finally:
                await response.aclose()
    except TimeoutError:
        raise TimedOut(f"no whole answer within {deadline:g} s") from None
    except httpx.HTTPError as exc:
        raise _failure(exc, client, bearer) from None


class Streamed:
    """The head of an answer, and its body as it arrives, under a cap."""

    def __init__(self, response: httpx.Response, cap: int) -> None:
        self.status_code = response.status_code
        self.reason_phrase = response.reason_phrase
        self.headers = response.headers
        self._response = response
        self._cap = cap

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in _capped(self._response, self._cap):
            yield chunk


def origin_of(url: httpx.URL) -> Origin:
    """Scheme, host and port (the scheme's default when none is given)."""
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme, 0)


def proxy_variables() -> list[str]:
    """The proxy variables set in the environment, by name (their values may hold a
    password, so never shown)."""
    return [
        name for name in _PROXY_VARIABLES if os.environ.get(name) or os.environ.get(name.lower())
    ]


def _request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    deadline: float,
    read_timeout: float | None,
    bearer: str | None,
    headers: Mapping[str, str] | None,
    json: Any,
    data: Mapping[str, str] | None,
    content: bytes | None = None,
) -> httpx.Request:
    sent = dict(headers or {})
    if bearer is not None:
        sent["Authorization"] = f"Bearer {bearer}"
    per_read = deadline if read_timeout is None else read_timeout
    return client.build_request(
        method,
        url,
        headers=sent,
        json=json,
        data=data,
        content=content,
        timeout=httpx.Timeout(per_read, connect=min(CONNECT_TIMEOUT, deadline)),
    )


def _token_stays_home(home: Origin) -> Callable[[httpx.Request], Awaitable[None]]:
    async def check(request: httpx.Request) -> None:
        if "authorization" in request.headers and origin_of(request.url) != home:
            scheme, host, port = origin_of(request.url)
            raise OtherOrigin(
                f"refused to send the token to {scheme}://{host}:{port}: it goes only to "
                f"{home[0]}://{home[1]}:{home[2]}"
            )

    return check


async def _read_capped(response: httpx.Response, cap: int) -> bytes:
    return b"".join([chunk async for chunk in _capped(response, cap)])


async def _capped(response: httpx.Response, cap: int) -> AsyncIterator[bytes]:
    """The body as it comes, refused as soon as it is declared or grows past `cap`: an
    answer declared too large is refused at its first chunk (one network read), which is
    kept as the refusal's `head` like the first bytes of one that grew too large."""
    declared = response.headers.get("content-length", "")
    refused = None
    if declared.isascii() and declared.isdigit() and int(declared) > cap:
        refused = f"answer of {declared} bytes refused (the cap is {cap})"
    size = 0
    head = b""
    async for chunk in response.aiter_bytes():
        head += chunk[: HEAD_KEPT - len(head)]
        size += len(chunk)
        if refused is None and size > cap:
            refused = f"answer over {cap} bytes refused"
        if refused is not None:
            raise AnswerTooLarge(refused, response.status_code, head)
        yield chunk
    if refused is not None:  # declared too large, and no body came
        raise AnswerTooLarge(refused, response.status_code, head)


def _failure(exc: httpx.HTTPError, client: httpx.AsyncClient, bearer: str | None) -> RequestFailed:
    """The failure in words for a log line: the error's own, never with the token in them
    (nor the exception chained, whose request carries it)."""
    if isinstance(exc, httpx.TimeoutException):
        return TimedOut(type(exc).__name__)
    said = str(exc) or type(exc).__name__
    if bearer:
        said = said.replace(bearer, "[token]")
    variable = _proxy_for(client.base_url)
    if variable is not None and isinstance(exc, httpx.TransportError):
        said += (
            f"; the request went through the proxy named by {variable}: check that proxy, "
            "or add the server's host to NO_PROXY"
        )
    return RequestFailed(said)


def _proxy_for(url: httpx.URL) -> str | None:
    """The variable naming the proxy a request to `url` goes through, or None (none set,
    or NO_PROXY exempts the host): for the words of a failure only."""
    proxies = urllib.request.getproxies()  # what httpx reads, system settings included
    key = url.scheme if proxies.get(url.scheme) else "all" if proxies.get("all") else None
    if key is None or urllib.request.proxy_bypass(url.host):
        return None
    return f"{key.upper()}_PROXY"
