"""LobuClient's two ways to the server — its own HTTP/1.1, or httpx (a proxy, a test's
transport) — put the same request on the wire and read the same answer from it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from device_agent.server.client import LobuClient
from device_agent.server.exchange import AnswerTooLarge, Exchange, Reply
from device_agent.server.http1 import H1Exchange
from device_agent.server.httpx_exchange import HttpxExchange
from tests.loopback import without_proxies

TOKEN = "owl_pat_" + "e" * 32
BODY = {"run_id": 7, "worker_id": "w1", "output": 'ünïcode ☃ and "quotes"', "error": None}


class RawServer:
    """Loopback HTTP/1.1 that records each request's raw bytes and gives `answer` back."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = _content_length(head)
                self.requests.append(head + await reader.readexactly(length))
                writer.write(self.answer)
                await writer.drain()
        writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RawServer]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base_path}"

    base_path = ""


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def both(origin: str) -> list[Exchange]:
    return [
        H1Exchange(origin),
        HttpxExchange(httpx.AsyncClient(base_url=origin, follow_redirects=False)),
    ]


def exchange_with(
    answer: bytes, base_path: str = "", **request: Any
) -> list[tuple[Reply | Exception, bytes]]:
    """Each exchange's reply (or failure) and the request it put on the wire."""

    async def go() -> list[tuple[Reply | Exception, bytes]]:
        results: list[tuple[Reply | Exception, bytes]] = []
        server = RawServer(answer)
        server.base_path = base_path
        async with server.running():
            for exchange in both(server.origin):
                try:
                    reply: Reply | Exception = await exchange.send(
                        request.get("method", "POST"),
                        request.get("path", "/api/workers/heartbeat"),
                        request.get("content", b"{}"),
                        request.get("headers", {"Content-Type": "application/json"}),
                        read_seconds=5.0,
                        connect_seconds=5.0,
                        cap=request.get("cap", 1024),
                    )
                except AnswerTooLarge as exc:
                    reply = exc
                finally:
                    await exchange.aclose()
                results.append((reply, server.requests[-1] if server.requests else b""))
        return results

    return asyncio.run(go())


def header_lines(raw: bytes) -> set[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    return {line.lower() for line in head[1:]}


def test_both_send_the_same_request_line_headers_and_body() -> None:
    content = json.dumps(BODY, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": "application/json",
        "Content-Length": str(len(content)),
        "User-Agent": "device-agent/test",
        "Accept": "application/json",
    }
    (direct, direct_raw), (viahttpx, httpx_raw) = exchange_with(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", content=content, headers=headers
    )
    assert direct == viahttpx
    assert direct_raw.split(b"\r\n", 1)[0] == b"POST /api/workers/heartbeat HTTP/1.1"
    assert direct_raw.split(b"\r\n\r\n", 1)[1] == httpx_raw.split(b"\r\n\r\n", 1)[1] == content
    # httpx adds its compression and connection headers; ours are all among its, Host included
    direct_headers, httpx_headers = header_lines(direct_raw), header_lines(httpx_raw)
    assert direct_headers <= httpx_headers
    assert any(line.startswith(b"host: 127.0.0.1:") for line in direct_headers)
    assert not any(line.startswith(b"accept-encoding:") for line in direct_headers)


def test_a_server_under_a_path_gets_the_path_before_every_route() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    (_, direct_raw), (_, httpx_raw) = exchange_with(answer, base_path="/lobu")
    line = b"POST /lobu/api/workers/heartbeat HTTP/1.1"
    assert direct_raw.split(b"\r\n", 1)[0] == httpx_raw.split(b"\r\n", 1)[0] == line


@pytest.mark.parametrize(
    "answer",
    [
        b'HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{"continue":true}',
        b"HTTP/1.1 409 Conflict\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 503 Deploying Now\r\nRetry-After: 30\r\nContent-Length: 4\r\n\r\nbusy",
        b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.example/\r\nContent-Length: 0\r\n\r\n",
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n4\r\n":1}\r\n0\r\n\r\n',
    ],
    ids=["json", "empty", "retry-after", "redirect-not-followed", "chunked"],
)
def test_both_read_the_same_reply(answer: bytes) -> None:
    (direct, _), (viahttpx, _) = exchange_with(answer)
    assert isinstance(direct, Reply)
    assert direct == viahttpx


def test_a_declared_or_streamed_answer_over_the_cap_is_refused_by_both() -> None:
    declared = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + (b"3e8\r\n" + b"y" * 1000 + b"\r\n") * 5
        + b"0\r\n\r\n"
    )
    for answer, words in ((declared, "answer of 5000 bytes refused"), (chunked, "over 1024")):
        for refusal, _ in exchange_with(answer, cap=1024):
            assert isinstance(refusal, AnswerTooLarge)
            assert words in str(refusal)
            assert refusal.status == 200


def test_lobu_client_goes_direct_unless_a_proxy_is_named_or_a_transport_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    without_proxies(monkeypatch)

    def kind(**options: Any) -> type:
        client = LobuClient("https://lobu.example", lambda: TOKEN, **options)
        asyncio.run(client.aclose())
        return type(client._exchange)

    assert kind() is H1Exchange
    assert kind(transport=httpx.MockTransport(lambda request: httpx.Response(200))) is (
        HttpxExchange
    )
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert kind() is HttpxExchange  # httpx routes through the proxy
