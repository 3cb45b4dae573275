"""The per-run MCP proxy: holds the device token, gives the CLI a secret that dies with
the run, streams answers as they come (issue 8, point 9)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from device_agent.executors.mcp_proxy import McpProxy
from tests.support.servers import HostileServer, Reply, json_reply, raw, trickle

DEVICE_TOKEN = "owl_pat_" + "m" * 32
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}


@contextlib.asynccontextmanager
async def proxied(
    replies: list[Reply],
) -> AsyncIterator[tuple[HostileServer, McpProxy, httpx.AsyncClient]]:
    async with (
        HostileServer(replies) as upstream,
        McpProxy(upstream.url + "/mcp", lambda: DEVICE_TOKEN) as proxy,
        httpx.AsyncClient() as cli,
    ):
        yield upstream, proxy, cli


def test_a_request_without_the_run_secret_is_refused_and_never_forwarded() -> None:
    async def go() -> None:
        async with proxied([json_reply({"ok": True})]) as (upstream, proxy, cli):
            for auth in ({}, {"Authorization": f"Bearer {DEVICE_TOKEN}"}):
                answer = await cli.post(proxy.url, json=INIT, headers=auth)
                assert answer.status_code == 401
            assert upstream.seen == []

    asyncio.run(go())


def test_a_request_with_the_secret_goes_upstream_with_the_device_token() -> None:
    reply = json_reply(
        {"jsonrpc": "2.0", "id": 1, "result": {}}, headers=[("Mcp-Session-Id", "s1")]
    )

    async def go() -> None:
        async with proxied([reply]) as (upstream, proxy, cli):
            headers = {
                "Authorization": f"Bearer {proxy.secret}",
                "Accept": "application/json, text/event-stream",
                "Cookie": "not-forwarded",
            }
            answer = await cli.post(proxy.url, json=INIT, headers=headers)
            assert answer.status_code == 200
            assert answer.json()["id"] == 1
            assert answer.headers["mcp-session-id"] == "s1"
            seen = upstream.seen[0]
            assert seen.path == "/mcp"
            assert seen.headers["authorization"] == f"Bearer {DEVICE_TOKEN}"
            assert "cookie" not in seen.headers
            assert json.loads(seen.body) == INIT
            assert DEVICE_TOKEN not in proxy.secret

    asyncio.run(go())


def test_an_event_stream_is_relayed_as_it_arrives_not_buffered() -> None:
    events = b"".join(b'data: {"n": %d}\n\n' % i for i in range(40))

    async def go() -> None:
        async with proxied([trickle(events, interval=0.05)]) as (upstream, proxy, cli):
            headers = {"Authorization": f"Bearer {proxy.secret}"}
            async with cli.stream("GET", proxy.url, headers=headers) as answer:
                first = await anext(answer.aiter_bytes())
                assert first
                # The first bytes are here while upstream is still sending.
                assert upstream.sent[0].body_bytes < len(events)

    asyncio.run(go())


def test_the_proxy_is_gone_with_the_run() -> None:
    async def go() -> None:
        async with proxied([raw(b"{}")]) as (_, proxy, cli):
            url = proxy.url
        async with httpx.AsyncClient() as cli:
            with pytest.raises(httpx.ConnectError):
                await cli.post(url, json=INIT, headers={"Authorization": "Bearer x"})

    asyncio.run(go())


def test_only_the_mcp_path_is_served() -> None:
    async def go() -> None:
        async with proxied([raw(b"{}")]) as (upstream, proxy, cli):
            other = proxy.url.replace("/mcp", "/api/workers/poll")
            answer = await cli.post(
                other, json={}, headers={"Authorization": f"Bearer {proxy.secret}"}
            )
            assert answer.status_code == 404
            assert upstream.seen == []

    asyncio.run(go())


def test_a_content_length_that_is_not_ascii_digits_is_refused_with_an_answer() -> None:
    # "²" is a digit to str.isdigit() but not to int(): refused, not a crashed handler.
    async def go() -> None:
        async with proxied([raw(b"{}")]) as (upstream, proxy, _):
            port = int(proxy.url.split(":")[2].split("/")[0])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + proxy.secret.encode()
                + b"\r\nContent-Length: \xb2\r\n\r\n"
            )
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), timeout=5)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 413"), answer
            assert upstream.seen == []

    asyncio.run(go())


# ------------------------------------------------- another local user (issue 21, point 12)

# The proxy in a process of its own with few descriptors left (the macOS launchd default is
# 256): what another local user's idle connections exhaust first.
_PROXY_WITH_FEW_DESCRIPTORS = """
import asyncio, json, os, resource, sys
from device_agent.executors.mcp_proxy import McpProxy

async def main() -> None:
    async with McpProxy(sys.argv[1], lambda: "owl_pat_child") as proxy:
        open_now = len(os.listdir("/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"))
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_now + int(sys.argv[2]), hard))
        print(json.dumps({"url": proxy.url, "secret": proxy.secret}), flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def _port(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


async def _idle_connections(port: int, count: int) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
    return writers


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE is POSIX")
def test_many_idle_connections_do_not_stop_the_clis_own_request_being_answered() -> None:
    async def go() -> None:
        async with HostileServer([json_reply({"jsonrpc": "2.0", "id": 1, "result": {}})]) as up:
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _PROXY_WITH_FEW_DESCRIPTORS, up.url + "/mcp", "40",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            idle: list[asyncio.StreamWriter] = []
            try:
                assert child.stdout is not None
                started = json.loads(await asyncio.wait_for(child.stdout.readline(), 30))
                # Twice what the proxy may hold: without a cap it runs out of descriptors.
                idle = await _idle_connections(_port(started["url"]), 80)
                async with httpx.AsyncClient(timeout=10) as cli:
                    answer = await cli.post(
                        started["url"],
                        json=INIT,
                        headers={"Authorization": f"Bearer {started['secret']}"},
                    )
                assert answer.status_code == 200
                assert answer.json()["id"] == 1
            finally:
                for writer in idle:
                    writer.close()
                child.kill()
                await child.wait()

    asyncio.run(go())


def test_idle_connections_past_the_cap_are_dropped_oldest_first() -> None:
    async def go() -> None:
        async with (
            HostileServer([raw(b"{}")]) as upstream,
            McpProxy(upstream.url + "/mcp", lambda: DEVICE_TOKEN, max_unproven=4) as proxy,
        ):
            connections = []
            for _ in range(10):
                connections.append(await asyncio.open_connection("127.0.0.1", _port(proxy.url)))
            for reader, _ in connections[:6]:  # EOF: the proxy let go of them
                assert await asyncio.wait_for(reader.read(), timeout=5) == b""
            for _, writer in connections:
                writer.close()

    asyncio.run(go())


def test_a_slow_request_head_is_dropped_at_the_deadline() -> None:
    async def go() -> None:
        async with (
            HostileServer([raw(b"{}")]) as upstream,
            McpProxy(upstream.url + "/mcp", lambda: DEVICE_TOKEN, head_deadline=0.3) as proxy,
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", _port(proxy.url))
            writer.write(b"POST /mcp HTTP/1.1\r\nHost: x\r\n")  # and the rest never comes
            await writer.drain()
            loop = asyncio.get_running_loop()
            started = loop.time()
            answer = await asyncio.wait_for(reader.read(), timeout=5)
            waited = loop.time() - started
            writer.close()
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert 0.2 <= waited < 5
            assert upstream.seen == []

    asyncio.run(go())


def test_a_wrong_secret_is_refused_as_soon_as_the_head_is_read_not_after_the_body() -> None:
    async def go() -> None:
        async with proxied([raw(b"{}")]) as (upstream, proxy, _):
            for auth in (b"Authorization: Bearer dap_run_wrong\r\n", b""):
                reader, writer = await asyncio.open_connection("127.0.0.1", _port(proxy.url))
                writer.write(
                    b"POST /mcp HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: 1000000\r\n\r\n"
                )  # the promised body never comes: the answer must not wait for it
                await writer.drain()
                answer = await asyncio.wait_for(reader.read(), timeout=5)
                writer.close()
                assert answer.startswith(b"HTTP/1.1 401"), answer
            assert upstream.seen == []

    asyncio.run(go())
