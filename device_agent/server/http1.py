"""HTTP/1.1 to one origin, on asyncio streams and h11: how `LobuClient` reaches the server.

Why not httpcore's pool (through httpx or directly): on loopback it cost ~640 µs of
CPU a request, where the same exchange written on h11 costs ~175 µs (3000 requests
each, one process, same server). The pool's locks and cancellation shields run on
anyio whatever network backend it is given, and each request asks every idle
connection several times whether it is still open. A run makes three requests
(poll, heartbeat, completion), and importing httpx, httpcore and anyio's asyncio
backend cost ~45 ms of the agent's start before its first poll.

`LobuClient` needs little of a general client: one origin, no cookies, no redirects,
no compression, HTTP/1.1. h11 parses the server's bytes (it is the parser httpcore
uses), bounds the size of an answer's head, and says whether a connection may be
kept. This module adds connections, timeouts and the cap on a body.

A failure is `ExchangeTimeout` (no answer in time) or `ExchangeError` (no usable
answer: refused, reset, garbage); `LobuClient` reads both as "try again later".
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import ssl
import time
from asyncio.trsock import TransportSocket
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Final
from urllib.parse import quote, urlsplit

import h11

from device_agent.server.exchange import (
    Content,
    ExchangeError,
    ExchangeTimeout,
    Reply,
    framing,
    phrase,
    read_capped,
)

# As httpx's defaults (httpx.Limits()): connections kept idle, and at most in all.
MAX_IDLE: Final = 20
MAX_CONNECTIONS: Final = 100
# How long an idle connection is reused: under the 5 s after which a Node server (Node's
# default keepAliveTimeout) closes it, so a request never races the server's close.
IDLE_SECONDS: Final = 4.0
# As httpcore: the largest answer head (status line and headers) read.
MAX_HEAD_BYTES: Final = 100 * 1024
READ_SIZE: Final = 64 * 1024
# As anyio's connect_tcp: a host whose IPv6 address hangs is tried on IPv4 after 250 ms.
HAPPY_EYEBALLS_DELAY: Final = 0.25


class H1Exchange:
    """Requests to one origin (`http://` or `https://`, optionally under a path), each on
    a kept-alive connection when one is idle and still open, else on a new one."""

    def __init__(self, origin: str) -> None:
        url = urlsplit(origin)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) server URL: {origin!r}")
        self._tls = url.scheme == "https"
        self._host = url.hostname
        default_port = 443 if self._tls else 80
        self._port = url.port or default_port
        host = _host_header(url.hostname, self._port, default_port)
        self._host_header = host.encode("ascii" if host.isascii() else "idna")
        self._base_path = _target(url.path.rstrip("/"))  # a server under /lobu
        self._ssl_context: ssl.SSLContext | None = None  # built at the first TLS connect
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._closed = False

    async def send(
        self,
        method: str,
        path: str,
        content: Content,
        headers: Mapping[str, str],
        *,
        read_seconds: float,
        connect_seconds: float,
        cap: int,
    ) -> Reply:
        try:
            head = h11.Request(
                method=method,
                target=self._base_path + _target(path),
                headers=[
                    (b"Host", self._host_header),
                    *_encoded(headers),
                    *framing(content, headers),
                ],
            )
        except h11.LocalProtocolError as exc:  # e.g. a header value with a newline in it
            raise ExchangeError(f"request refused before sending: {exc}") from exc
        async with self._slots:
            connection = self._idle_connection() or await self._connect(connect_seconds)
            try:
                reply = await connection.exchange(head, content, read_seconds, cap)
            except BaseException:
                connection.close()  # half a request or answer: never reused
                raise
            self._keep_or_close(connection)
            return reply

    def drop_idle(self) -> None:
        """Close the connections kept for reuse: after a sleep, which the monotonic clock
        of their idle time does not count on Linux, a server or a NAT may have dropped
        them, or the network changed — a request on one would wait out its read timeout."""
        while self._idle:
            self._idle.pop().close()

    async def aclose(self) -> None:
        self._closed = True
        self.drop_idle()

    def _idle_connection(self) -> Connection | None:
        """The most recently used idle connection that is still fit to use."""
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable():
                return connection
            connection.close()
        return None

    def _keep_or_close(self, connection: Connection) -> None:
        if self._closed or len(self._idle) >= MAX_IDLE or not connection.ready_for_next():
            connection.close()
        else:
            self._idle.append(connection)

    async def _connect(self, seconds: float) -> Connection:
        tls = self._context() if self._tls else None
        try:
            async with asyncio.timeout(seconds):
                reader, writer = await asyncio.open_connection(
                    self._host,
                    self._port,
                    ssl=tls,
                    server_hostname=self._host if tls else None,
                    happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY,
                )
        except TimeoutError as exc:  # before OSError, of which it is a subclass
            raise ExchangeTimeout("ConnectTimeout") from exc
        except OSError as exc:  # refused, unreachable, DNS, and ssl.SSLError (a bad certificate)
            raise ExchangeError(str(exc) or type(exc).__name__) from exc
        return Connection(reader, writer)

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = default_tls_context()
        return self._ssl_context


class Connection:
    """One HTTP/1.1 connection: one request and its answer at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        # Looked up once: asyncio's read-only view of the socket, the same through TLS.
        self._socket: TransportSocket | None = writer.get_extra_info("socket")
        self._idle_since = 0.0
        self._answer_started = False  # of the exchange under way: a Response was read
        self._peer_closed = False

    async def exchange(
        self, head: h11.Request, content: Content, read_seconds: float, cap: int
    ) -> Reply:
        self._answer_started = False
        await self._send_request(head, content, read_seconds)
        return await self._read_answer(read_seconds, cap)

    def reusable(self) -> bool:
        """Whether this idle connection may carry another request: not idle too long, and
        nothing to read (on an idle connection that means the peer closed it)."""
        fresh = time.monotonic() - self._idle_since < IDLE_SECONDS
        return fresh and not is_socket_readable(self._socket)

    def ready_for_next(self) -> bool:
        """After a whole answer: start the next request/answer cycle if both sides may."""
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
            self._idle_since = time.monotonic()
            return True
        return False

    def close(self) -> None:
        # Nothing left to send is worth waiting for, and a peer that never reads must
        # not hold the socket open: drop it at once.
        self._writer.transport.abort()

    async def _send_request(self, head: h11.Request, content: Content, seconds: float) -> None:
        await self._write(self._event(head), seconds)
        if isinstance(content, AsyncIterable):
            async for piece in content:
                await self._write(self._event(h11.Data(data=piece)), seconds)
        elif content:
            await self._write(self._event(h11.Data(data=content)), seconds)
        await self._write(self._event(h11.EndOfMessage()), seconds)

    async def _read_answer(self, seconds: float, cap: int) -> Reply:
        event = await self._next_event(seconds)
        while isinstance(event, h11.InformationalResponse):  # 100 Continue and the like
            event = await self._next_event(seconds)
        if not isinstance(event, h11.Response):  # only ConnectionClosed can come instead
            raise ExchangeError("the server closed the connection without answering")
        self._answer_started = True
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers
        }  # h11 gives names in lower case
        status = event.status_code
        body = await read_capped(
            self._body_chunks(seconds), headers.get("content-length"), cap, status
        )
        reason = event.reason.decode("latin-1") if event.reason else phrase(status)
        return Reply(status, headers, reason, body)

    async def _body_chunks(self, seconds: float) -> AsyncIterator[bytes]:
        while not isinstance(event := await self._next_event(seconds), h11.EndOfMessage):
            if not isinstance(event, h11.Data):  # only ConnectionClosed can come instead
                raise ExchangeError("the server closed the connection mid-answer")
            yield event.data

    def _broken_answer(self, exc: h11.RemoteProtocolError) -> str:
        if not self._peer_closed:  # bytes that are not HTTP, or too many of them
            return f"the server's answer is not HTTP/1.1: {exc}"
        if self._answer_started:
            return "the server closed the connection mid-answer"
        return "the server closed the connection without answering"

    def _event(self, event: h11.Event) -> bytes:
        try:
            return self._h11.send(event) or b""
        except h11.LocalProtocolError as exc:  # e.g. a header value with a newline in it
            raise ExchangeError(f"request refused before sending: {exc}") from exc

    async def _next_event(self, seconds: float) -> h11.Event:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise ExchangeError(self._broken_answer(exc)) from exc
            if event is h11.NEED_DATA:
                data = await self._read(seconds)
                self._peer_closed = not data
                self._h11.receive_data(data)
            elif event is h11.PAUSED:  # only after a whole answer, which is never read on
                raise ExchangeError("no answer expected on this connection")
            else:
                return event  # type: ignore[return-value]  # the sentinels are handled above

    async def _read(self, seconds: float) -> bytes:
        try:
            async with asyncio.timeout(seconds):
                return await self._reader.read(READ_SIZE)  # b"": the server closed
        except TimeoutError as exc:
            raise ExchangeTimeout("ReadTimeout") from exc
        except OSError as exc:
            raise ExchangeError(str(exc) or type(exc).__name__) from exc

    async def _write(self, data: bytes, seconds: float) -> None:
        if not data:
            return
        try:
            self._writer.write(data)
            async with asyncio.timeout(seconds):
                await self._writer.drain()
        except TimeoutError as exc:
            raise ExchangeTimeout("WriteTimeout") from exc
        except OSError as exc:
            raise ExchangeError(str(exc) or type(exc).__name__) from exc


def default_tls_context() -> ssl.SSLContext:
    """The CA store httpx would trust: $SSL_CERT_FILE or $SSL_CERT_DIR when set (a private
    CA, a TLS-inspecting proxy), else certifi's bundle, else the system's."""
    capath = os.environ.get("SSL_CERT_DIR") or None
    cafile = os.environ.get("SSL_CERT_FILE") or (None if capath else _certifi_bundle())
    context = ssl.create_default_context(cafile=cafile, capath=None if cafile else capath)
    context.set_alpn_protocols(["http/1.1"])  # as httpcore offers it without HTTP/2
    return context


def _certifi_bundle() -> str | None:
    try:
        import certifi  # httpx's own dependency, so normally present
    except ImportError:
        return None  # the system's store, then
    return certifi.where()


def is_socket_readable(sock: socket.socket | TransportSocket | None) -> bool:
    """Whether an idle connection has something to read, which on an idle HTTP/1.1
    connection means the peer closed it (or broke the protocol): either way it cannot
    be reused. httpcore's own check (`httpcore._utils`, private), written here."""
    if sock is None or sock.fileno() < 0:
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def _encoded(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("ascii"), value.encode("latin-1")) for name, value in headers.items()]


def _host_header(host: str, port: int, default_port: int) -> str:
    """What httpx sends as Host: the port only when not the scheme's default, IPv6 in
    brackets."""
    shown = f"[{host}]" if ":" in host else host
    return shown if port == default_port else f"{shown}:{port}"


def _target(path: str) -> bytes:
    """A path as it goes on the request line: what is not URL-safe percent-encoded, as
    httpx does (an organization's slug is the server's text)."""
    return quote(path, safe="/%:@!$&'()*+,;=~").encode("ascii")
