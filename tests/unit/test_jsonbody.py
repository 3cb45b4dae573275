"""A large output is sent as JSON in pieces: the same bytes `json=` would send, never whole."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import respx

from device_agent.agent.result import ExitReason, Report
from device_agent.lanes.watcher.lane import WATCHER
from device_agent.server.client import LobuClient
from device_agent.server.jsonbody import LARGE, SLICE, Body, has_large_text, pieces, request_body

ORIGIN = "http://127.0.0.1:9"
TRICKY = 'é"\\\n\t\x01 ☃ 𝄞 </script>'  # escapes, a control character, beyond the BMP


def as_httpx_sends(body: dict[str, Any]) -> bytes:
    return httpx.Request("POST", ORIGIN, json=body).read()


def test_the_pieces_are_the_bytes_httpx_would_send() -> None:
    output = (TRICKY * (2 * LARGE // len(TRICKY)))[: 2 * LARGE + 7]  # cut mid-pattern
    body = {"worker_id": "w1", "output": output, "error": None, "nested": {"a": [1, 2.5]}}
    sent = pieces(body)
    assert b"".join(sent) == as_httpx_sends(body)
    assert max(len(piece) for piece in sent) <= 4 * SLICE  # never one piece the size of it


def test_small_bodies_keep_the_plain_path() -> None:
    assert not has_large_text({"output": "x" * (LARGE - 1), "n": 1})
    assert has_large_text({"output": "x" * LARGE})
    assert b"".join(pieces({})) == b"{}"


def test_body_declares_its_length_and_type() -> None:
    body = {"output": "ü" * LARGE}
    assert Body(body).headers == {
        "Content-Length": str(len(as_httpx_sends(body))),
        "Content-Type": "application/json",
    }


def test_a_request_body_is_the_bytes_httpx_would_send_small_or_large() -> None:
    small = {"worker_id": "w1", "output": TRICKY, "error": None, "n": 2.5}
    content, headers = request_body(small)
    assert content == as_httpx_sends(small)
    assert headers == {"Content-Length": str(len(content)), "Content-Type": "application/json"}
    large = {"output": "ü" * LARGE}
    pieces_of, headers = request_body(large)
    assert isinstance(pieces_of, Body)
    assert headers == pieces_of.headers


@respx.mock
@pytest.mark.usefixtures("lobu_client_through_httpx")  # respx plays the server
def test_a_large_completion_reaches_the_server_whole() -> None:
    url = f"{ORIGIN}/api/workers/me/runs/7/complete-watcher"
    route = respx.post(url).respond(200, json={"ok": True, "status": "completed"})
    output = TRICKY * (LARGE // 4)
    report = Report(output, None, 10, 0, None, ExitReason.OK)

    async def go() -> None:
        async with LobuClient(ORIGIN, lambda: "owl_pat_" + "a" * 32) as client:
            body = WATCHER.completion_body(report, run_id=7, worker_id="w1", attempt=0)
            answer = await client.complete(WATCHER.completion_route(7), body)
            assert answer.ok

    asyncio.run(go())
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/json"
    assert int(request.headers["content-length"]) == len(request.content)
    assert "transfer-encoding" not in request.headers  # a length, not chunks: as before
    assert json.loads(request.content)["output"] == output
