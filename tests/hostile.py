"""A hostile (or just broken) HTTP server for tests: raw asyncio streams on 127.0.0.1.

httpx-level mocks cannot trickle, send 100 MB or nest JSON a hundred thousand deep
the way a socket can, so this server writes whatever bytes a test scripts. Each
request gets the next scripted `Reply` (the last one repeats):

    async with HostileServer([nested_json(100_000)]) as server:
        client = LobuClient(server.url, ...)

`running_in_thread()` serves a subprocess (`device-agent run`) the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

Reply = Callable[[asyncio.StreamWriter, "Sent"], Awaitable[None]]


@dataclass
class Sent:
    """What the server managed to write for one request."""

    body_bytes: int = 0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def _head(status: int, headers: Sequence[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} X", *(f"{k}: {v}" for k, v in headers), "", ""]
    return "\r\n".join(lines).encode()


def raw(body: bytes, *, status: int = 200, headers: Sequence[tuple[str, str]] = ()) -> Reply:
    async def reply(writer: asyncio.StreamWriter, sent: Sent) -> None:
        head = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        writer.write(_head(status, [*head, *headers]) + body)
        await writer.drain()
        sent.body_bytes += len(body)

    return reply


def json_reply(value: object, *, status: int = 200, **kw: Sequence[tuple[str, str]]) -> Reply:
    """JSON as Python writes it: lone surrogates become `\\udc80` escapes, valid JSON."""
    return raw(json.dumps(value).encode(), status=status, **kw)


def nested_json(depth: int) -> Reply:
    return raw(b"[" * depth + b"]" * depth)


def trickle(body: bytes, *, interval: float = 1.0) -> Reply:
    """A correct Content-Length, then one byte per `interval`: no single read ever times out."""

    async def reply(writer: asyncio.StreamWriter, sent: Sent) -> None:
        writer.write(_head(200, [("Content-Length", str(len(body)))]))
        for byte in body:
            writer.write(bytes([byte]))
            await writer.drain()
            sent.body_bytes += 1
            await asyncio.sleep(interval)

    return reply


def huge(size: int, *, declared: bool = False, chunk: int = 1 << 16) -> Reply:
    """`size` bytes of a JSON string, generated as sent; chunked unless `declared`."""

    async def reply(writer: asyncio.StreamWriter, sent: Sent) -> None:
        framing = ("Content-Length", str(size)) if declared else ("Transfer-Encoding", "chunked")
        writer.write(_head(200, [("Content-Type", "application/json"), framing]))
        left = size
        while left > 0:
            piece = b"x" * min(chunk, left)
            writer.write(piece if declared else b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            sent.body_bytes += len(piece)
            left -= len(piece)
        if not declared:
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    return reply


def redirect(location: str, *, status: int = 307) -> Reply:
    return raw(b"", status=status, headers=[("Location", location)])


@dataclass
class HostileServer:
    replies: list[Reply]
    seen: list[Seen] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    url: str = ""
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> HostileServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent = Sent()
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                self.seen.append(request)
                self.sent.append(sent)
                reply = self.replies[min(len(self.seen) - 1, len(self.replies) - 1)]
                await reply(writer, sent)
        except (ConnectionError, asyncio.IncompleteReadError):
            return  # the client gave up on us: that is what most tests want
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()

    @contextlib.contextmanager
    def running_in_thread(self) -> Iterator[HostileServer]:
        """Serve from a thread of its own, for a subprocess under test."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        stop = asyncio.Event()

        async def main() -> None:
            async with self:
                ready.set()
                await stop.wait()

        thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
        thread.start()
        if not ready.wait(timeout=30):
            raise RuntimeError("the hostile server did not start")
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=30)


async def _read_request(reader: asyncio.StreamReader) -> Seen | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    first, *lines = head.decode("latin-1").split("\r\n")
    method, path, _ = first.split(" ", 2)
    headers = {}
    for line in lines:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Seen(method, path, headers, body)
