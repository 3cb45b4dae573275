"""A minimal asyncio HTTP/1.1 server: keep-alive, Content-Length bodies, no framework.

Just enough HTTP for the dev server: one request at a time per connection,
bodies framed by Content-Length (chunked uploads are refused with 411), and a
handler that returns a `Response`, or None to drop the connection without
answering (how faults simulate a lost reply).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import unquote

from device_agent.serving import close_server

MAX_HEADER_BYTES: Final = 64 * 1024
MAX_BODY_BYTES: Final = 16 * 1024 * 1024


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # percent-decoded, without the query string
    query: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> Response:
        body = json.dumps(obj, ensure_ascii=False).encode()
        return cls(status=status, body=body, headers=dict(headers or {}))

    def encode(self, *, keep_alive: bool) -> bytes:
        reason = _reason(self.status)
        lines = [f"HTTP/1.1 {self.status} {reason}"]
        if self.body:  # an empty answer (a 202 to a notification) names no type
            lines.append(f"Content-Type: {self.content_type}")
        lines += [
            f"Content-Length: {len(self.body)}",
            "Connection: keep-alive" if keep_alive else "Connection: close",
        ]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


Handler = Callable[[Request], Awaitable[Response | None]]


class BadRequest(Exception):
    """The bytes on the wire are not an HTTP request we accept."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpServer:
    """Serves `handler` on (host, port); port 0 picks a free port."""

    def __init__(self, handler: Handler, host: str, port: int) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server is not started")
        sockname: tuple[Any, ...] = self._server.sockets[0].getsockname()
        return int(sockname[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_connection, self._host, self._port, limit=MAX_HEADER_BYTES
        )

    async def stop(self) -> None:
        if self._server is None:
            return
        await close_server(self._server, self._connections)
        self._server = None

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the peer went away or we are shutting down: nothing to answer
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                request = await read_request(reader)
            except BadRequest as exc:
                error = Response.json(exc.status, {"error": str(exc)})
                writer.write(error.encode(keep_alive=False))
                await writer.drain()
                return
            if request is None:
                return  # clean EOF between requests
            response = await self._answer(request)
            if response is None:
                return  # a fault asked us to vanish without a word
            keep_alive = (request.header("connection") or "").lower() != "close"
            writer.write(response.encode(keep_alive=keep_alive))
            await writer.drain()
            if not keep_alive:
                return

    async def _answer(self, request: Request) -> Response | None:
        try:
            return await self._handler(request)
        except Exception as exc:  # a bug in a handler must not look like a network fault
            return Response.json(500, {"error": f"dev server error: {exc!r}"})


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """Read one request; None on EOF before its first byte."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise
    except asyncio.LimitOverrunError:
        raise BadRequest(431, "Request header fields too large") from None
    method, target, headers = _parse_head(head)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise BadRequest(411, "Length Required: chunked request bodies are not supported")
    body = await _read_body(reader, headers)
    raw_path, _, query = target.partition("?")
    return Request(method=method, path=unquote(raw_path), query=query, headers=headers, body=body)


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, f"Malformed request line: {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(400, f"Malformed header line: {line[:100]!r}")
        headers[name.strip().lower()] = value.strip()
    return parts[0].upper(), parts[1], headers


async def _read_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
    raw_length = headers.get("content-length", "0")
    if not raw_length.isdigit():
        raise BadRequest(400, f"Invalid Content-Length: {raw_length[:40]!r}")
    length = int(raw_length)
    if length > MAX_BODY_BYTES:
        raise BadRequest(413, "Request body too large")
    return await reader.readexactly(length) if length else b""


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
