"""The asyncio network backend under httpx: failures as httpcore names them, TLS,
keep-alive, and LobuClient really on it — all against servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from device_agent.client import Answer, AnswerKind, LobuClient
from device_agent.http_options import transport_for
from device_agent.netio import AsyncioBackend, AsyncioTransport
from tests.helpers import wait_for_async

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TOKEN = "owl_pat_" + "a" * 32
ANSWER = b'{"next_poll_seconds": 10}'
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")


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
            pass  # the client hung up or refused our certificate
        finally:
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
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    @property
    def origin(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"


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


async def request_sent_to(server: Loopback) -> httpcore.AsyncNetworkStream:
    """A connection to `server` through the backend, a GET written on it."""
    stream = await AsyncioBackend().connect_tcp("127.0.0.1", server.port, timeout=5)
    await stream.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
    return stream


def refused_port() -> int:
    """A loopback port nothing listens on: bound, never listened, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def heartbeat(origin: str, **options: Any) -> Answer:
    """One request from a LobuClient built as the agent builds it: no transport given."""
    async with LobuClient(origin, lambda: TOKEN, **options) as client:
        return await client.heartbeat(run_id=7, worker_id="w1")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy where the tests run would route around the backend: only the environment
    counts here, and it names none (macOS would also ask the system's settings)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(urllib.request, "getproxies", urllib.request.getproxies_environment)


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


# ------------------------------------------------------------------ LobuClient


def test_lobu_client_built_without_a_transport_goes_through_the_asyncio_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # LobuClient goes to httpcore directly (device_agent/exchange.py), on this backend.
    connected: list[tuple[str, int]] = []
    connect_tcp = AsyncioBackend.connect_tcp

    async def counted(self: AsyncioBackend, host: str, port: int, **kw: Any) -> Any:
        connected.append((host, port))
        return await connect_tcp(self, host, port, **kw)

    monkeypatch.setattr(AsyncioBackend, "connect_tcp", counted)

    async def go() -> None:
        async with Loopback(answer_every_request).running() as server:
            async with LobuClient(server.origin, lambda: TOKEN) as client:
                answer = await client.heartbeat(run_id=7, worker_id="w1")
                answer = await client.heartbeat(run_id=7, worker_id="w1")
            assert answer.ok
            assert connected == [("127.0.0.1", server.port)]  # and reused: keep-alive
            assert server.accepted == 1

    asyncio.run(go())


def test_lobu_client_reports_a_refused_connection_as_before() -> None:
    async def go() -> None:
        answer = await heartbeat(f"http://127.0.0.1:{refused_port()}")
        assert answer.kind is AnswerKind.TRANSIENT
        assert not answer.reached
        assert answer.message.startswith("cannot reach the server (")  # httpx.ConnectError

    asyncio.run(go())


def test_lobu_client_reports_a_server_that_never_answers_as_a_read_timeout() -> None:
    async def go() -> None:
        async with Loopback(never_answer).running() as server:
            answer = await heartbeat(server.origin, request_timeout=0.3)
        assert answer.timed_out
        assert answer.message == "timed out (ReadTimeout)"

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


def test_lobu_client_speaks_https_to_a_server_whose_certificate_the_user_trusts(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # as a user behind their own CA

    async def go() -> None:
        async with tls_server(certificate).running() as server:
            answer = await heartbeat(server.origin)
        assert answer.ok, answer.describe()

    asyncio.run(go())


def test_lobu_client_refuses_a_certificate_nobody_trusts(
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
