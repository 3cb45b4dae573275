"""httpcore's network layer written directly on asyncio, for the agent's httpx clients
(login, token rotation, the tools proxy; LobuClient has its own, device_agent/server/http1.py).

Why it exists: profiles of `device-agent run` (py-spy over 400 runs at concurrency 4
against the dev server, a `command` profile running `cat`) put the HTTP client at
~20 % of the agent's CPU, much of it in anyio, httpcore's default asyncio backend.
Every request enters and leaves several anyio cancel scopes, and the connection
pool asks each idle connection `get_extra_info("is_readable")` ~7 times a request;
anyio answers each ask by building its whole attribute dict, a `getpeername()`
syscall included. Caching the socket alone cut ~1 ms of CPU per run (9.7 -> 8.6 ms).

Here a connection is an asyncio stream pair, a timeout is one `asyncio.timeout`,
and the socket is looked up once. Failures are httpcore's own exceptions, raised
where anyio's backend raises them, so httpx maps them as before (`httpx.ConnectError`,
`httpx.ReadTimeout`, ...). Only the words of a refused connection differ: asyncio's
"Connect call failed ('host', port)" with its errno, where anyio said "All connection
attempts failed".
"""

# Timeouts arrive as arguments because httpcore's interface passes them so.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import ssl
from asyncio.trsock import TransportSocket
from collections.abc import Awaitable, Iterable
from typing import Any, Final

import httpcore
import httpx

from device_agent.server.http1 import HAPPY_EYEBALLS_DELAY, is_socket_readable

# httpx's own defaults (httpx.AsyncClient() without `limits`).
LIMITS: Final = httpx.Limits(max_connections=100, max_keepalive_connections=20)

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)
Opening = Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection, plain or TLS, as httpcore reads and writes it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        # Kept, not asked for again: "is_readable" is asked several times a request.
        # asyncio's read-only view of the socket, which stays the same through start_tls.
        self._socket: TransportSocket | None = writer.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Up to `max_bytes`; b"" once the peer has closed (as anyio's backend answers)."""
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:  # before OSError, of which it is a subclass
            raise httpcore.ReadTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.ReadError(exc) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.WriteError(exc) from exc

    async def aclose(self) -> None:
        # Nothing left to send is worth waiting for, and a peer that never reads must
        # not hold the socket open: drop it at once, as anyio's backend does.
        self._writer.transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Upgrade this connection in place; the context's verification and ALPN apply."""
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except BaseException as exc:
            await self.aclose()  # httpcore never sees this stream: it must not leak
            if isinstance(exc, TimeoutError):
                raise httpcore.ConnectTimeout(exc) from exc
            if isinstance(exc, OSError):  # ssl.SSLError included: "certificate verify failed"
                raise httpcore.ConnectError(exc) from exc
            raise
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return is_socket_readable(self._socket)
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._socket
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Opens `AsyncioStream`s; errors are httpcore's ConnectError/ConnectTimeout."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        local = (local_address, 0) if local_address else None
        opening = asyncio.open_connection(
            host, port, local_addr=local, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY
        )
        return await _connected(opening, timeout, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await _connected(asyncio.open_unix_connection(path), timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _connected(
    opening: Opening, seconds: float | None, socket_options: Iterable[SocketOption] | None
) -> AsyncioStream:
    try:
        async with asyncio.timeout(seconds):
            reader, writer = await opening
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
    except TimeoutError as exc:
        raise httpcore.ConnectTimeout(exc) from exc
    except OSError as exc:  # refused, unreachable, and DNS failures (socket.gaierror)
        raise httpcore.ConnectError(exc) from exc
    return AsyncioStream(reader, writer)


class AsyncioTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport — its request building and its exception mapping, kept
    exactly — with its connection pool rebuilt on `AsyncioBackend`.

    httpx takes no network backend, so the pool it built (`_pool`, private) is swapped
    for one with the same settings; tests/unit/test_netio.py fails loudly if a future
    httpx moves it."""

    def __init__(self, *, verify: ssl.SSLContext | bool = True) -> None:
        ssl_context = httpx.create_ssl_context(verify=verify)  # SSL_CERT_FILE/DIR honoured
        super().__init__(verify=ssl_context, limits=LIMITS)
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError(
                "this httpx keeps no httpcore pool in AsyncHTTPTransport._pool: "
                "device_agent.server.netio needs updating for it"
            )
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=LIMITS.max_connections,
            max_keepalive_connections=LIMITS.max_keepalive_connections,
            keepalive_expiry=LIMITS.keepalive_expiry,
            network_backend=AsyncioBackend(),
        )
