"""A per-run loopback MCP proxy: the CLI never holds the device token.

A CLI reaches the Lobu tools at `<origin>/mcp` with a bearer token
(docs/protocol.md, "execution_config and the CLI"). Handing it the device
token would put the token in the CLI's environment or config, and so in
every tool the coding agent spawns. Instead, each run gets this proxy on
127.0.0.1 (port 0) with a random secret of its own: the CLI is wired to the
proxy with that secret, the proxy forwards MCP streamable-HTTP requests (POST
with JSON or SSE answers, GET streams, DELETE) upstream with the real token,
and streams the answers back. The secret is worthless once the run ends:
the proxy is gone with it.

One request per connection (`Connection: close`), bodies with Content-Length,
answers sent chunked as they arrive — never buffered whole.

Any local user can connect to a loopback port, so a connection costs nothing
until it proves it holds the secret: its request head must arrive within
`HEAD_DEADLINE_SECONDS`, the secret is checked as soon as the head is read
(before any body), and at most `MAX_UNPROVEN` connections wait for their head
at once: connections are accepted one at a time and a new one evicts the
oldest waiting one. Idle connections from someone else can therefore neither
starve the CLI's own request nor use up the agent's file descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
import socket
from collections.abc import Callable
from typing import Final

import httpx

from device_agent.logs import get_logger
from device_agent.server.http import RequestFailed, Streamed, connect, stream

log = get_logger(__name__)

PATH: Final = "/mcp"
MAX_HEAD_BYTES: Final = 64 * 1024
MAX_BODY_BYTES: Final = 8 * 1024 * 1024  # a tool call's arguments; nothing needs more
# An upstream exchange, relayed as it arrives: a tool call's answer, or an event stream the
# CLI opens again when it ends. Bounded like every request; the run's end closes it sooner.
UPSTREAM_SECONDS: Final = 15 * 60
UPSTREAM_ANSWER_CAP: Final = 64 * 1024 * 1024
# A local CLI writes its whole request head at once; this is ample and bounds a slow head.
HEAD_DEADLINE_SECONDS: Final = 10.0
# Connections that have not yet shown the secret, held at once. A CLI opens a few at a time.
MAX_UNPROVEN: Final = 16
_LISTEN_BACKLOG: Final = 128
_ACCEPT_RETRY_SECONDS: Final = 1.0  # after a failed accept (no descriptors left), as asyncio does
# What an MCP client and server need to see of each other; nothing else crosses.
_REQUEST_HEADERS: Final = (
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
)
_ANSWER_HEADERS: Final = ("content-type", "mcp-session-id", "cache-control", "www-authenticate")
_METHODS: Final = ("GET", "POST", "DELETE")


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class McpProxy:
    """`async with McpProxy(upstream, token) as proxy:` — `proxy.url` and `proxy.secret`
    are what the CLI gets; `token` is read per request, so a refreshed token applies."""

    def __init__(
        self,
        upstream: str,
        token: Callable[[], str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        upstream_seconds: float = UPSTREAM_SECONDS,
        head_deadline: float = HEAD_DEADLINE_SECONDS,
        max_unproven: int = MAX_UNPROVEN,
    ) -> None:
        self.upstream = upstream
        self.secret = "dap_run_" + secrets.token_urlsafe(32)
        self.url = ""
        self._token = token
        self._transport = transport
        self._upstream_seconds = upstream_seconds
        self._head_deadline = head_deadline
        self._max_unproven = max_unproven
        # Made on the first request: most runs never call a tool, and a client costs a TLS
        # context (docs/protocol.md, "execution_config and the CLI").
        self._http: httpx.AsyncClient | None = None
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        # Every open connection's task and stream; the unproven ones (still to show the
        # secret) again, oldest first (dicts keep insertion order).
        self._tasks: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._unproven: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def __aenter__(self) -> McpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setblocking(False)
            listener.bind(("127.0.0.1", 0))
            listener.listen(_LISTEN_BACKLOG)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._accepting = asyncio.create_task(self._accept(listener))
        port = listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}{PATH}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            await asyncio.gather(self._accepting, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
        connections = list(self._tasks.items())
        for task, _ in connections:
            task.cancel()
        await asyncio.gather(*(task for task, _ in connections), return_exceptions=True)
        for _, writer in connections:  # a task cancelled before it ran closed nothing
            writer.close()
        if self._http is not None:
            await self._http.aclose()

    async def _accept(self, listener: socket.socket) -> None:
        """Accept connections one at a time, so what the proxy holds stays bounded: each new
        connection past `max_unproven` waiting ones evicts the oldest waiting one (someone
        idling is what gets dropped; the CLI sends its head as soon as it connects)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except ConnectionAbortedError:
                continue  # the peer gave up before it was accepted
            except OSError as exc:  # out of descriptors: wait for some to be freed
                log.warning("MCP proxy: cannot accept a connection", error=str(exc))
                await asyncio.sleep(_ACCEPT_RETRY_SECONDS)
                continue
            try:
                reader, writer = await asyncio.open_connection(sock=conn, limit=MAX_HEAD_BYTES)
            except OSError:
                conn.close()
                continue  # gone already: nothing to serve
            task = asyncio.create_task(self._serve(reader, writer))
            self._tasks[task] = writer
            self._unproven[task] = writer
            if len(self._unproven) > self._max_unproven:
                oldest = next(iter(self._unproven))
                self._unproven.pop(oldest).transport.abort()
                oldest.cancel()

    def _client(self) -> httpx.AsyncClient:
        """The agent's one HTTP client (device_agent/server/http.py), for the server's origin:
        no redirect followed, the real token to the server and nowhere else."""
        if self._http is None:
            self._http = connect(self.upstream, transport=self._transport)
        return self._http

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        try:
            await self._exchange(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the CLI hung up: nothing left to answer
        finally:
            if task is not None:
                self._tasks.pop(task, None)
                self._unproven.pop(task, None)
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, target, headers = await self._read_proven_head(reader)
            _check_route(method, target)
            body = await _read_body(reader, headers)
        except _BadRequest as exc:
            await _answer(writer, exc.status, str(exc))
            return
        query = target.partition("?")[2]
        upstream = self.upstream + (f"?{query}" if query else "")
        sent = {k: v for k, v in headers.items() if k in _REQUEST_HEADERS}
        relayed = False
        try:
            async with stream(
                self._client(),
                method,
                upstream,
                deadline=self._upstream_seconds,
                cap=UPSTREAM_ANSWER_CAP,
                bearer=self._token(),
                headers=sent,
                content=body,
            ) as response:
                relayed = True
                await _relay(response, writer)
        except RequestFailed as exc:
            log.warning("MCP proxy: no usable answer from the server", error=str(exc))
            if not relayed:
                await _answer(writer, 502, "the Lobu server cannot be reached")

    async def _read_proven_head(
        self, reader: asyncio.StreamReader
    ) -> tuple[str, str, dict[str, str]]:
        """The request head, read within the deadline and carrying this run's secret;
        from then on the connection no longer counts as waiting. Raises _BadRequest."""
        try:
            async with asyncio.timeout(self._head_deadline):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            raise _BadRequest(408, "the request head did not arrive in time") from None
        except asyncio.LimitOverrunError:
            raise _BadRequest(431, "request head too large") from None
        method, target, headers = _parse_head(head)
        given = headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.secret}".encode()):
            raise _BadRequest(401, "this run's MCP secret is required")
        task = asyncio.current_task()
        if task is not None:
            self._unproven.pop(task, None)
        return method, target, headers


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    first, *lines = head.decode("latin-1").split("\r\n")
    parts = first.split(" ")
    if len(parts) != 3:
        raise _BadRequest(400, "not an HTTP request")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], headers


def _check_route(method: str, target: str) -> None:
    if target.partition("?")[0] != PATH:
        raise _BadRequest(404, f"only {PATH} is served")
    if method not in _METHODS:
        raise _BadRequest(405, f"{method} is not an MCP method")


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise _BadRequest(411, "send a Content-Length")
    length = headers.get("content-length", "0")
    # isascii too: "²" passes isdigit() and then fails int().
    if not (length.isascii() and length.isdigit()) or int(length) > MAX_BODY_BYTES:
        raise _BadRequest(413, "request body missing a length or too large")
    return await reader.readexactly(int(length))


async def _relay(response: Streamed, writer: asyncio.StreamWriter) -> None:
    """Status and headers, then the body chunk by chunk as the server sends it (SSE)."""
    lines = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
    lines += [f"{k}: {v}" for k, v in response.headers.items() if k.lower() in _ANSWER_HEADERS]
    lines += ["Transfer-Encoding: chunked", "Connection: close", "", ""]
    writer.write("\r\n".join(lines).encode("latin-1", "replace"))
    await writer.drain()
    async for chunk in response.chunks():
        if chunk:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
    writer.write(b"0\r\n\r\n")
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _answer(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    body = message.encode()
    writer.write(
        f"HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
