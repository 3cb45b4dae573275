"""Fake servers on 127.0.0.1 for the HTTP tests, on raw asyncio streams.

httpx-level mocks (respx) cannot trickle, send 100 MB or nest JSON a hundred thousand
deep the way a socket can, so these servers write whatever bytes a test scripts:

- `Loopback` hands each connection to a handler coroutine (`answer_every_request`,
  `never_answer`, …), plain or TLS with a throwaway certificate (`tls_server`);
- `HostileServer` answers each request with the next scripted `Reply` (the last one
  repeats): `json_reply`, `nested_json`, `trickle`, `huge`, `redirect`, `silent`, `raw`.

    async with HostileServer([nested_json(100_000)]) as server:
        client = LobuClient(server.url, ...)

`running_in_thread()` serves a subprocess (`device-agent run`) the same way. The dev
server (device_agent.devserver) is the fake server that behaves like Lobu; these are for
what Lobu would never send.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import threading
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
ANSWER = b'{"next_poll_seconds": 10}'
PROXY_VARIABLES = (
    *("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"),
    *("http_proxy", "https_proxy", "all_proxy", "no_proxy"),
)


def without_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy where the tests run: only the environment counts (macOS and Windows would
    also ask the system's settings), and it names none."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(urllib.request, "getproxies", urllib.request.getproxies_environment)


class Loopback:
    """A server on 127.0.0.1 that hands each connection to `handler` and counts them."""

    def __init__(self, handler: Handler, *, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.accepted = 0
        self.port = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client hung up or refused our certificate: what most tests want
        finally:
            self._tasks.discard(task)
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self, *, receive_buffer: int | None = None) -> AsyncIterator[Loopback]:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # set before listen(): accepted sockets inherit it
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        listener.bind(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        server = await asyncio.start_server(self._serve, sock=listener, ssl=self.tls)
        try:
            yield self
        finally:
            server.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()

    @contextlib.contextmanager
    def running_in_thread(self) -> Iterator[Loopback]:
        """Serve from a thread and an event loop of its own, for a subprocess under test."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        stop = asyncio.Event()

        async def main() -> None:
            async with self.running():
                ready.set()
                await stop.wait()

        thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
        thread.start()
        if not ready.wait(timeout=30):
            raise RuntimeError("the loopback server did not start")
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=30)
            if not thread.is_alive():
                loop.close()

    @property
    def origin(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"


# ------------------------------------------------------------- handlers


async def answer_every_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Keep-alive HTTP/1.1: a JSON 200 for each request, until the client hangs up."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.lower().split(b"\r\n")
                if line.startswith(b"content-length:")
            ),
            0,
        )
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
        )
        await writer.drain()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # reads the request, then waits for a hang-up that never comes


async def half_an_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
    await writer.drain()  # then the handler returns and the connection is closed


async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.Event().wait()  # cancelled when the server stops


def refused_port() -> int:
    """A loopback port nothing listens on: bound, never listened, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def make_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1, and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no `openssl` binary to make a throwaway certificate with")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def tls_server(certificate: tuple[Path, Path]) -> Loopback:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    context.set_alpn_protocols(["http/1.1"])
    return Loopback(answer_every_request, tls=context)


# ------------------------------------------------------- scripted replies

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


def silent() -> Reply:
    """No answer at all: the request is read, and nothing is ever written back."""

    async def reply(writer: asyncio.StreamWriter, sent: Sent) -> None:
        await asyncio.Event().wait()  # cancelled when the server stops

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


class HostileServer(Loopback):
    """A loopback server that answers the n-th request with `replies[n]` (the last repeats),
    and keeps what each request was (`seen`) and how much of its answer was written (`sent`)."""

    def __init__(self, replies: list[Reply]) -> None:
        super().__init__(self._play)
        self.replies = replies
        self.seen: list[Seen] = []
        self.sent: list[Sent] = []
        self._stack = contextlib.AsyncExitStack()

    @property
    def url(self) -> str:
        return self.origin

    async def __aenter__(self) -> HostileServer:
        await self._stack.enter_async_context(self.running())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _play(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent = Sent()
        while (request := await _read_request(reader)) is not None:
            self.seen.append(request)
            self.sent.append(sent)
            reply = self.replies[min(len(self.seen) - 1, len(self.replies) - 1)]
            await reply(writer, sent)

    @contextlib.contextmanager
    def running_in_thread(self) -> Iterator[HostileServer]:
        with super().running_in_thread():
            yield self


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
