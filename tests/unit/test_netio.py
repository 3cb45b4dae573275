"""The asyncio network backend under httpx (the login and tools clients): failures as
httpcore names them, TLS and keep-alive — all against servers on loopback."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from device_agent.server.http_options import transport_for
from device_agent.server.netio import AsyncioBackend, AsyncioTransport
from tests.helpers import wait_for_async
from tests.loopback import (
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


async def request_sent_to(server: Loopback) -> httpcore.AsyncNetworkStream:
    """A connection to `server` through the backend, a GET written on it."""
    stream = await AsyncioBackend().connect_tcp("127.0.0.1", server.port, timeout=5)
    await stream.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
    return stream


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    without_proxies(monkeypatch)  # a proxy would route around the backend


# ------------------------------------------------------------------ the backend


def test_a_refused_connection_is_a_connect_error() -> None:
    async def go() -> None:
        with pytest.raises(httpcore.ConnectError, match=r"Connect call failed|refused"):
            await AsyncioBackend().connect_tcp("127.0.0.1", refused_port(), timeout=5)

    asyncio.run(go())


def test_a_name_that_does_not_resolve_is_a_connect_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_such_name(*args: object, **kwargs: object) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def go() -> None:
        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_such_name)
        with pytest.raises(httpcore.ConnectError, match="Name or service not known"):
            await AsyncioBackend().connect_tcp("lobu.invalid", 443, timeout=5)

    asyncio.run(go())


def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    async def go() -> None:
        async with Loopback(never_answer).running() as server:
            stream = await request_sent_to(server)
            with pytest.raises(httpcore.ReadTimeout):
                await stream.read(1024, timeout=0.2)
            await stream.aclose()

    asyncio.run(go())


def test_a_peer_closing_mid_answer_reads_as_the_end_of_the_stream() -> None:
    async def go() -> None:
        async with Loopback(half_an_answer).running() as server:
            stream = await request_sent_to(server)
            received = b""
            while chunk := await stream.read(1024, timeout=5):
                received += chunk
            assert received.endswith(b"0123456789")  # then b"", as anyio's backend answers
            await stream.aclose()

    asyncio.run(go())


def test_a_peer_that_never_reads_times_the_write_out() -> None:
    async def go() -> None:
        async with Loopback(never_read).running(receive_buffer=4096) as server:
            small_send_buffer = (socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            stream = await AsyncioBackend().connect_tcp(
                "127.0.0.1", server.port, timeout=5, socket_options=[small_send_buffer]
            )
            with pytest.raises(httpcore.WriteTimeout):
                await stream.write(b"x" * (8 << 20), timeout=0.2)
            await stream.aclose()

    asyncio.run(go())


def test_is_readable_is_false_on_an_idle_connection_and_true_once_the_peer_closed_it() -> None:
    hang_up = asyncio.Event()

    async def close_when_told(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await hang_up.wait()

    async def go() -> None:
        async with Loopback(close_when_told).running() as server:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", server.port, timeout=5)
            await wait_for_async(lambda: server.accepted, what="the server to accept")
            assert stream.get_extra_info("is_readable") is False
            hang_up.set()
            await wait_for_async(
                lambda: stream.get_extra_info("is_readable"), what="the peer's close to show"
            )
            await stream.aclose()

    asyncio.run(go())


# ------------------------------------------------------------------ through httpx


def test_the_transport_keeps_one_connection_across_requests() -> None:
    async def go() -> None:
        async with Loopback(answer_every_request).running() as server:
            async with httpx.AsyncClient(transport=AsyncioTransport(verify=False)) as client:
                for _ in range(3):
                    response = await client.post(f"{server.origin}/api/workers/poll", json={})
                    assert response.json() == {"next_poll_seconds": 10}
            assert server.accepted == 1

    asyncio.run(go())


def test_a_peer_closing_mid_answer_is_a_transport_error_not_a_hang() -> None:
    async def go() -> None:
        transport = AsyncioTransport(verify=False)
        async with (
            Loopback(half_an_answer).running() as server,
            httpx.AsyncClient(transport=transport) as client,
        ):
            with pytest.raises(httpx.TransportError, match="peer closed connection"):
                await client.get(server.origin, timeout=5)

    asyncio.run(go())


def test_an_http_proxy_in_the_environment_leaves_httpx_its_own_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(transport_for("https://lobu.example"), AsyncioTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert transport_for("https://lobu.example") is None  # httpx then honours the proxy


# ------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory)


def test_tls_to_a_trusted_server_is_upgraded_in_place_with_alpn(
    certificate: tuple[Path, Path],
) -> None:
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    trusting.set_alpn_protocols(["http/1.1"])

    async def go() -> None:
        async with tls_server(certificate).running() as server:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", server.port, timeout=5)
            tls = await stream.start_tls(trusting, server_hostname="127.0.0.1", timeout=5)
            assert tls.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
            await tls.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", timeout=5)
            assert (await tls.read(4096, timeout=5)).startswith(b"HTTP/1.1 200 OK")
            await tls.aclose()

    asyncio.run(go())


def test_tls_to_an_untrusted_server_is_a_connect_error_naming_the_certificate(
    certificate: tuple[Path, Path],
) -> None:
    async def go() -> None:
        async with tls_server(certificate).running() as server:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", server.port, timeout=5)
            with pytest.raises(httpcore.ConnectError, match="certificate verify failed"):
                await stream.start_tls(
                    ssl.create_default_context(), server_hostname="127.0.0.1", timeout=5
                )

    asyncio.run(go())
