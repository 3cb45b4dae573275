"""The per-run MCP proxy: holds the device token, gives the CLI a secret that dies with
the run, streams answers as they come (issue 8, point 9)."""

from __future__ import annotations

import asyncio
import contextlib
import json
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
