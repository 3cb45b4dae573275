"""The agent's own HTTP/1.1 (device_agent/server/http1.py), as LobuClient uses it: kept-alive
connections, failures named, a hostile server bounded — all against loopback servers."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from device_agent.server import http1
from device_agent.server.client import Answer, AnswerKind, LobuClient
from device_agent.server.exchange import ExchangeError, ExchangeTimeout, Reply
from device_agent.server.http1 import H1Exchange
from tests.helpers import wait_for_async
from tests.loopback import (
    ANSWER,
    Loopback,
    answer_every_request,
    half_an_answer,
    make_certificate,
    never_answer,
    never_read,
    refused_port,
    tls_server,
    without_proxies,
)

TOKEN = "owl_pat_" + "a" * 32


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    without_proxies(monkeypatch)  # a proxy would send LobuClient through httpx instead


async def heartbeat(origin: str, **options: Any) -> Answer:
    """One request from a LobuClient built as the agent builds it."""
    async with LobuClient(origin, lambda: TOKEN, **options) as client:
        return await client.heartbeat(run_id=7, worker_id="w1")


async def send(exchange: H1Exchange, content: Any = b"{}", **options: Any) -> Reply:
    settings = {"read_seconds": 5.0, "connect_seconds": 5.0, "cap": 1024} | options
    return await exchange.send(
        "POST", "/api/workers/heartbeat", content, {"Content-Type": "application/json"}, **settings
    )


def answer_once_then(
    answer: bytes, *, then_close: bool = True
) -> Any:  # a handler: one request read, `answer` written, then hang up (or wait)
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        if not then_close:
            await asyncio.Event().wait()

    return handler


# ------------------------------------------------------------------ connections


def test_lobu_client_keeps_one_connection_across_requests() -> None:
    async def go() -> None:
        async with Loopback(answer_every_request).running() as server:
            async with LobuClient(server.origin, lambda: TOKEN) as client:
                for _ in range(3):
                    answer = await client.heartbeat(run_id=7, worker_id="w1")
                    assert answer.ok
                    assert answer.body == {"next_poll_seconds": 10}
            assert server.accepted == 1

    asyncio.run(go())


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def go() -> None:
        async with Loopback(
            answer_once_then(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        ).running() as server:
            exchange = H1Exchange(server.origin)
            assert (await send(exchange)).status == 200
            idle = exchange._idle[0]
            await wait_for_async(lambda: not idle.reusable(), what="the server's close to show")
            assert (await send(exchange)).status == 200  # on a new connection, no error
            assert server.accepted == 2
            await exchange.aclose()

    asyncio.run(go())


def test_a_connection_idle_past_its_time_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def go() -> None:
        async with Loopback(answer_every_request).running() as server:
            exchange = H1Exchange(server.origin)
            await send(exchange)
            monkeypatch.setattr(http1, "IDLE_SECONDS", 0.0)  # as if 5 s had gone by
            await send(exchange)
            assert server.accepted == 2
            await exchange.aclose()

    asyncio.run(go())


def test_after_a_sleep_no_kept_alive_connection_is_reused() -> None:
    """A connection idle for 2 s before a night's sleep still looks fresh to the monotonic
    clock on Linux; the agent's wake-up drops it instead."""

    async def go() -> None:
        async with Loopback(answer_every_request).running() as server:
            async with LobuClient(server.origin, lambda: TOKEN) as client:
                assert (await client.heartbeat(run_id=7, worker_id="w1")).ok
                client.forget_connections()  # what Agent.woke_up does
                assert (await client.heartbeat(run_id=7, worker_id="w1")).ok
            assert server.accepted == 2

    asyncio.run(go())


def test_an_answer_saying_connection_close_ends_the_connection() -> None:
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"

    async def go() -> None:
        async with Loopback(answer_once_then(answer, then_close=False)).running() as server:
            exchange = H1Exchange(server.origin)
            assert (await send(exchange)).content == b"{}"
            assert exchange._idle == []
            await exchange.aclose()

    asyncio.run(go())


def test_a_request_cancelled_midway_leaves_no_connection_to_reuse() -> None:
    async def go() -> None:
        async with Loopback(never_answer).running() as server:
            exchange = H1Exchange(server.origin)
            request = asyncio.create_task(send(exchange))
            await wait_for_async(lambda: server.accepted, what="the request to arrive")
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
            assert exchange._idle == []  # half an exchange is never reused
            await exchange.aclose()

    asyncio.run(go())


# ------------------------------------------------------------------ failures, named


def test_a_refused_connection_cannot_reach_the_server() -> None:
    async def go() -> None:
        answer = await heartbeat(f"http://127.0.0.1:{refused_port()}")
        assert answer.kind is AnswerKind.TRANSIENT
        assert not answer.reached
        assert answer.message.startswith("cannot reach the server (")
        assert "Connect call failed" in answer.message or "refused" in answer.message

    asyncio.run(go())


def test_a_name_that_does_not_resolve_cannot_reach_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_such_name(*args: object, **kwargs: object) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def go() -> None:
        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_such_name)
        answer = await heartbeat("https://lobu.invalid")
        assert not answer.reached
        assert "Name or service not known" in answer.message

    asyncio.run(go())


def test_a_server_that_never_answers_times_the_read_out() -> None:
    async def go() -> None:
        async with Loopback(never_answer).running() as server:
            answer = await heartbeat(server.origin, request_timeout=0.3)
        assert answer.timed_out
        assert answer.message == "timed out (ReadTimeout)"

    asyncio.run(go())


def test_a_server_that_never_reads_times_the_write_out() -> None:
    async def go() -> None:
        async with Loopback(never_read).running(receive_buffer=4096) as server:
            exchange = H1Exchange(server.origin)
            with pytest.raises(ExchangeTimeout, match="WriteTimeout"):
                await send(exchange, b"x" * (8 << 20), read_seconds=0.2)
            await exchange.aclose()

    asyncio.run(go())


def test_a_peer_closing_mid_answer_is_an_error_not_a_hang() -> None:
    async def go() -> None:
        async with Loopback(half_an_answer).running() as server:
            exchange = H1Exchange(server.origin)
            with pytest.raises(ExchangeError, match="closed the connection mid-answer"):
                await send(exchange, cap=1000)
            await exchange.aclose()

    asyncio.run(go())


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not HTTP/1.1"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (200 * 1024), "not HTTP/1.1"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", "not HTTP/1.1"),
        (b"", "closed the connection without answering"),
    ],
    ids=["not-http", "endless-head", "two-lengths", "nothing"],
)
def test_an_answer_that_is_not_http_is_an_error_naming_it(answer: bytes, words: str) -> None:
    async def go() -> None:
        async with Loopback(answer_once_then(answer)).running() as server:
            exchange = H1Exchange(server.origin)
            with pytest.raises(ExchangeError, match=words) as caught:
                await send(exchange)
            assert not isinstance(caught.value, ExchangeTimeout)
            await exchange.aclose()

    asyncio.run(go())


def test_an_answer_given_before_the_upload_ended_is_read() -> None:
    """A server refusing a body (a 413 from a proxy) may answer before it has read it, then
    discard the rest until the client is done, as nginx does."""
    too_large = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large"

    async def answer_then_discard(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(too_large)
        await writer.drain()
        while await reader.read(1 << 16):
            pass

    async def go() -> None:
        loopback = Loopback(answer_then_discard)
        async with loopback.running(receive_buffer=4096) as server:
            exchange = H1Exchange(server.origin)
            reply = await send(exchange, b"x" * (8 << 20), cap=1024)
            assert (reply.status, reply.content) == (413, b"too large")
            await exchange.aclose()

    asyncio.run(go())


# ------------------------------------------------------------------ what goes on the wire


def test_a_body_in_pieces_arrives_whole_with_its_length() -> None:
    received: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        received.append(head + await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()

    async def pieces() -> Any:
        for piece in (b'{"output":"', b"x" * 300_000, b'"}'):
            yield piece

    async def go() -> None:
        async with Loopback(record).running() as server:
            exchange = H1Exchange(server.origin)
            length = str(len(b'{"output":""}') + 300_000)
            reply = await exchange.send(
                "POST",
                "/api/workers/me/runs/7/complete-watcher",
                pieces(),
                {"Content-Length": length},
                read_seconds=5.0,
                connect_seconds=5.0,
                cap=1024,
            )
            assert reply.status == 200
            await exchange.aclose()

    asyncio.run(go())
    head, body = received[0].split(b"\r\n\r\n", 1)
    assert body == b'{"output":"' + b"x" * 300_000 + b'"}'
    assert b"transfer-encoding" not in head.lower()


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://lobu.example", b"lobu.example"),
        ("http://lobu.example:80", b"lobu.example"),
        ("https://lobu.example:443/", b"lobu.example"),
        ("https://lobu.example:8443", b"lobu.example:8443"),
        ("http://[::1]:8080", b"[::1]:8080"),
        ("https://Lobu.Example", b"lobu.example"),
    ],
)
def test_the_host_header_is_what_httpx_sends(origin: str, host: bytes) -> None:
    assert H1Exchange(origin)._host_header == host


def test_a_path_that_is_not_url_safe_is_percent_encoded() -> None:
    assert http1._target("/api/ça va/manage_watchers") == b"/api/%C3%A7a%20va/manage_watchers"
    assert http1._target("/api/workers/me/runs/7/complete") == b"/api/workers/me/runs/7/complete"


@pytest.mark.parametrize("origin", ["ftp://lobu.example", "lobu.example", "http://"])
def test_an_origin_that_is_not_an_http_url_is_refused_at_once(origin: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        H1Exchange(origin)


# ------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory)


def test_https_to_a_server_whose_certificate_the_user_trusts(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # as a user behind their own CA

    async def go() -> None:
        async with tls_server(certificate).running() as server:
            async with LobuClient(server.origin, lambda: TOKEN) as client:
                for _ in range(2):
                    answer = await client.heartbeat(run_id=7, worker_id="w1")
                    assert answer.ok, answer.describe()
                    assert answer.body == {"next_poll_seconds": 10}
            assert server.accepted == 1  # TLS connections are kept alive too

    asyncio.run(go())


def test_a_certificate_nobody_trusts_is_refused_naming_it(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)

    async def go() -> None:
        async with tls_server(certificate).running() as server:
            answer = await heartbeat(server.origin)
        assert not answer.reached
        assert "certificate verify failed" in answer.message

    asyncio.run(go())


def test_the_tls_context_verifies_and_is_built_only_for_https() -> None:
    assert H1Exchange("http://127.0.0.1:9")._ssl_context is None
    context = http1.default_tls_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert ANSWER  # the loopback servers' answer, used above
