"""The upload of a run's transcript: the request (route, bearer, body), the terminal status,
the tries."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import respx

from device_agent.agent import transcript_upload
from device_agent.agent.result import ExitReason, Report, failure
from device_agent.server.client import TRANSCRIPT_ROUTE, LobuClient

ORIGIN = "http://127.0.0.1:9"
DEVICE_TOKEN = "owl_pat_" + "d" * 32
SESSION_TOKEN = "owl_ses_" + "s" * 32
JSONL = '{"type":"session","version":3,"id":"s","timestamp":"2026-12-08T01:25:00.000Z","cwd":"/"}\n'


def send(answers: list[httpx.Response], *, pause: float = 0.0) -> tuple[str, respx.Route]:
    async def go() -> tuple[str, respx.Route]:
        with respx.mock(base_url=ORIGIN) as mock:
            route = mock.post(TRANSCRIPT_ROUTE).mock(side_effect=answers)
            async with LobuClient(ORIGIN, lambda: DEVICE_TOKEN) as client:
                answer = await transcript_upload.upload(
                    client,
                    run_id=812,
                    terminal_status="completed",
                    jsonl=JSONL,
                    session_token=SESSION_TOKEN,
                    pause=pause,
                )
            return transcript_upload.outcome_of(answer, "completed"), route

    return asyncio.run(go())


def test_it_goes_to_the_worker_gateway_with_the_session_token_and_never_the_device_token() -> None:
    outcome, route = send([httpx.Response(200, json={"id": 41})])
    assert outcome == "uploaded (completed, stored as 41)"
    [call] = route.calls
    assert str(call.request.url) == f"{ORIGIN}/lobu/worker/transcript/snapshot"
    assert call.request.headers["authorization"] == f"Bearer {SESSION_TOKEN}"
    assert DEVICE_TOKEN.encode() not in call.request.content
    assert DEVICE_TOKEN not in str(call.request.headers)
    assert call.request.headers["content-type"] == "application/json"
    assert json.loads(call.request.content) == {
        "runId": 812,
        "terminalStatus": "completed",
        "snapshotJsonl": JSONL,
    }


def test_three_tries_250_ms_apart_when_the_server_could_not_take_it() -> None:
    outcome, route = send([httpx.Response(503), httpx.Response(502), httpx.Response(500)])
    assert route.call_count == 3
    assert outcome.startswith("upload failed: HTTP 500")
    assert transcript_upload.UPLOAD_PAUSE_SECONDS == 0.25
    _, route = send([httpx.Response(503), httpx.Response(200, json={"id": 1})])
    assert route.call_count == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "Invalid token"}),
        (400, {"error": "Invalid terminalStatus"}),
        (409, {"error": "conflict"}),
        (413, {"error": "too large"}),
    ],
)
def test_a_refusal_is_not_tried_again(status: int, body: dict[str, str]) -> None:
    outcome, route = send([httpx.Response(status, json=body)] * 3)
    assert route.call_count == 1
    assert outcome == f"upload failed: HTTP {status}: {body['error']}"


def report(reason: ExitReason) -> Report:
    return Report("", None, 1, None, None, reason)


@pytest.mark.parametrize(
    ("answer", "last_report", "status"),
    [
        ({"ok": True, "status": "completed"}, report(ExitReason.OK), "completed"),
        # The server decides: a round the CLI cut short by a timeout still completed the run.
        ({"status": "completed"}, report(ExitReason.TIMEOUT), "completed"),
        ({"ok": True, "status": "cancelled"}, report(ExitReason.OK), "cancelled"),
        ({"status": "failed"}, report(ExitReason.CANCELLED), "cancelled"),
        ({"status": "failed"}, report(ExitReason.TIMEOUT), "timeout"),
        ({"status": "failed"}, failure("boom"), "failed"),
        ({"status": "timeout"}, report(ExitReason.CRASH), "failed"),
        ("not an object", report(ExitReason.OK), "failed"),
    ],
)
def test_the_terminal_status_of_each_ending(
    answer: object, last_report: Report, status: str
) -> None:
    assert transcript_upload.terminal_status(answer, last_report) == status
    assert status in transcript_upload.TERMINAL_STATUSES
