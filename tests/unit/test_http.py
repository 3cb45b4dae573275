"""The agent's one HTTP client (device_agent/server/http.py), against loopback servers: the
guards every request gets (overall deadline, body cap, no redirect, the token to its origin
only), proxies from the environment, kept-alive connections, failures named, TLS."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from device_agent.errors import ExitCode
from device_agent.server import http
from device_agent.server.client import Answer, AnswerKind, LobuClient
from device_agent.server.http import (
    AnswerTooLarge,
    OtherOrigin,
    ProxyUnusable,
    Reply,
    TimedOut,
    connect,
    fetch,
)
from tests.support.servers import (
    HostileServer,
    Loopback,
    answer_every_request,
    half_an_answer,
    huge,
    make_certificate,
    never_answer,
    raw,
    refused_port,
    tls_server,
    trickle,
    without_proxies,
)
from tests.support.waiting import wait_for_async

TOKEN = "owl_pat_" + "a" * 32


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    without_proxies(monkeypatch)  # each test names the proxies it wants


async def heartbeat(origin: str, **options: Any) -> Answer:
    """One request from a LobuClient built as the agent builds it."""
    async with LobuClient(origin, lambda: TOKEN, **options) as client:
        return await client.heartbeat(run_id=7, worker_id="w1")


async def get(origin: str, url: str = "/", **options: Any) -> Reply:
    async with connect(origin) as client:
        return await fetch(client, "GET", url, **({"deadline": 5.0} | options))


def answer_once_then(answer: bytes) -> Any:
    """A handler: one request read, `answer` written, then hang up."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()

    return handler


# ------------------------------------------------------------------ the guards


def test_a_trickled_answer_is_given_up_at_the_overall_deadline() -> None:
    """A byte every 0.1 s never trips the per-read timeout: only the overall deadline ends it."""
    body = b'{"next_poll_seconds": 10}' + b" " * 1000

    async def go() -> None:
        async with HostileServer([trickle(body, interval=0.1)]) as server:
            started = time.monotonic()
            with pytest.raises(TimedOut, match=r"no whole answer within 0.5 s"):
                await get(server.url, deadline=0.5, read_timeout=1.0)
            assert time.monotonic() - started < 5
            assert server.sent[0].body_bytes < len(body)

    asyncio.run(go())


@pytest.mark.parametrize(
    ("reply", "words"),
    [(huge(5000, declared=True), "answer of 5000 bytes refused"), (huge(50_000), "over 1024")],
    ids=["declared", "streamed"],
)
def test_an_answer_past_the_cap_is_refused(reply: Any, words: str) -> None:
    async def go() -> None:
        async with HostileServer([reply]) as server:
            with pytest.raises(AnswerTooLarge, match=words) as refused:
                await get(server.url, cap=1024)
            assert refused.value.status == 200

    asyncio.run(go())


def test_a_redirect_is_an_answer_and_is_not_followed() -> None:
    async def go() -> None:
        async with Loopback(answer_every_request).running() as elsewhere:
            moved = raw(b"", status=302, headers=[("Location", elsewhere.origin + "/steal")])
            async with HostileServer([moved]) as server:
                reply = await get(server.url, bearer=TOKEN)
            assert reply.status_code == 302
            assert elsewhere.accepted == 0

    asyncio.run(go())


def test_the_token_is_never_sent_to_another_origin() -> None:
    async def go() -> None:
        async with (
            Loopback(answer_every_request).running() as home,
            Loopback(answer_every_request).running() as other,
        ):
            async with connect(home.origin) as client:
                with pytest.raises(OtherOrigin, match="refused to send the token"):
                    await fetch(client, "GET", other.origin + "/", deadline=5, bearer=TOKEN)
                assert other.accepted == 0
                reply = await fetch(client, "GET", "/", deadline=5, bearer=TOKEN)
                assert reply.status_code == 200
            assert home.accepted == 1

    asyncio.run(go())


# ------------------------------------------------------------------ proxies


def test_an_http_proxy_named_by_the_environment_carries_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def go() -> None:
        async with HostileServer([raw(b'{"continue": true}')]) as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            answer = await heartbeat("http://lobu.invalid")
            assert answer.ok, answer.describe()
            assert proxy.seen[0].path == "http://lobu.invalid/api/workers/heartbeat"
            assert proxy.seen[0].headers["authorization"] == f"Bearer {TOKEN}"

    asyncio.run(go())


def test_no_proxy_exempts_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{refused_port()}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    async def go() -> None:
        async with Loopback(answer_every_request).running() as server:
            assert (await heartbeat(server.origin)).ok

    asyncio.run(go())


def test_a_socks_proxy_is_used_and_a_failure_through_it_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the socks extra, a SOCKS proxy is no ImportError at start: the request goes to
    it, and when it cannot be reached the words say which variable named it."""
    monkeypatch.setenv("ALL_PROXY", f"socks5h://127.0.0.1:{refused_port()}")

    async def go() -> None:
        async with Loopback(answer_every_request).running() as server:
            answer = await heartbeat(server.origin)
            assert answer.kind is AnswerKind.TRANSIENT
            assert "through the proxy named by ALL_PROXY" in answer.message
            assert "NO_PROXY" in answer.message
            assert server.accepted == 0

    asyncio.run(go())


def test_a_proxy_httpx_cannot_use_is_a_one_line_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks4://user:secret@127.0.0.1:1080")
    with pytest.raises(ProxyUnusable) as refused:
        connect("https://lobu.example")
    message = refused.value.user_message()
    assert message.startswith("configuration error: the proxy named by HTTPS_PROXY")
    assert "secret" not in message
    assert "\n" not in message
    assert refused.value.exit_code is ExitCode.CONFIG


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


def test_after_a_sleep_no_kept_alive_connection_is_reused() -> None:
    """A connection idle for 2 s before a night's sleep still looks fresh to the monotonic
    clock on Linux; the agent's wake-up drops it instead."""

    async def go() -> None:
        async with Loopback(answer_every_request).running() as server:
            async with LobuClient(server.origin, lambda: TOKEN) as client:
                assert (await client.heartbeat(run_id=7, worker_id="w1")).ok
                client.forget_connections()  # what PollLoop.woke_up does
                assert (await client.heartbeat(run_id=7, worker_id="w1")).ok
            assert server.accepted == 2

    asyncio.run(go())


def test_a_request_under_way_at_a_wake_up_still_gets_its_answer() -> None:
    release = asyncio.Event()

    async def answer_when_released(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()

    async def go() -> None:
        async with (
            Loopback(answer_when_released).running() as server,
            LobuClient(server.origin, lambda: TOKEN) as client,
        ):
            beat = asyncio.create_task(client.heartbeat(run_id=7, worker_id="w1"))
            await wait_for_async(lambda: server.accepted, what="the request to arrive")
            client.forget_connections()
            release.set()
            assert (await beat).ok

    asyncio.run(go())


# ------------------------------------------------------------------ failures, named


def test_a_refused_connection_cannot_reach_the_server() -> None:
    answer = asyncio.run(heartbeat(f"http://127.0.0.1:{refused_port()}"))
    assert answer.kind is AnswerKind.TRANSIENT
    assert not answer.reached
    assert answer.message.startswith("cannot reach the server (")


def test_a_server_that_never_answers_times_the_read_out() -> None:
    async def go() -> None:
        async with Loopback(never_answer).running() as server:
            answer = await heartbeat(server.origin, request_timeout=0.3)
        assert answer.timed_out
        assert answer.message == "timed out (ReadTimeout)"

    asyncio.run(go())


def test_a_peer_closing_mid_answer_is_transient_not_a_hang() -> None:
    async def go() -> None:
        async with Loopback(half_an_answer).running() as server:
            answer = await heartbeat(server.origin)
        assert answer.kind is AnswerKind.TRANSIENT
        assert not answer.reached

    asyncio.run(go())


@pytest.mark.parametrize(
    "answer",
    [b"SSH-2.0-OpenSSH_9.6\r\n\r\n", b""],
    ids=["not-http", "nothing"],
)
def test_an_answer_that_is_not_http_is_transient(answer: bytes) -> None:
    async def go() -> None:
        async with Loopback(answer_once_then(answer)).running() as server:
            reply = await heartbeat(server.origin)
        assert reply.kind is AnswerKind.TRANSIENT
        assert reply.message.startswith("cannot reach the server (")

    asyncio.run(go())


def test_a_large_result_reaches_the_server_whole_as_compact_json() -> None:
    output = "x" * (3 * 1024 * 1024) + "ünïcode ☃"
    body = {"run_id": 7, "worker_id": "w1", "output": output, "error": None}

    async def go() -> None:
        async with HostileServer([raw(b'{"ok": true, "status": "completed"}')]) as server:
            async with LobuClient(server.url, lambda: TOKEN) as client:
                assert (await client.complete("/api/workers/complete", body)).ok
            seen = server.seen[0]
            assert seen.headers["content-type"] == "application/json"
            assert seen.body == json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    asyncio.run(go())


def test_a_server_under_a_path_gets_the_path_before_every_route() -> None:
    async def go() -> None:
        async with HostileServer([raw(b"{}")]) as server:
            assert (await heartbeat(server.url + "/lobu")).ok
            assert server.seen[0].path == "/lobu/api/workers/heartbeat"

    asyncio.run(go())


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


def test_clients_read_the_ca_store_once_until_ssl_cert_file_names_another(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import httpx

    built: list[str | None] = []
    real = httpx.create_ssl_context

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(os.environ.get("SSL_CERT_FILE"))
        return real(*args, **kwargs)

    monkeypatch.setattr(httpx, "create_ssl_context", counting)
    http._trusted.cache_clear()  # what earlier tests built
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    for _ in range(3):  # e.g. Run now, a rotation, a run's MCP proxy
        connect("https://lobu.test")
    other = tmp_path / "other-ca.pem"
    other.write_bytes(certificate[0].read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(other))
    connect("https://lobu.test")
    assert built == [str(certificate[0]), str(other)]
