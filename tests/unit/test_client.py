"""Every answer class of the worker API (docs/protocol.md, "Poll and claim" to "Run now"),
classified as the agent needs it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest
import respx

from device_agent.agent.result import ExitReason, Report
from device_agent.lanes import UnhandledLane
from device_agent.lanes.watcher.lane import WATCHER
from device_agent.server.client import USER_AGENT, Answer, AnswerKind, LobuClient, parse_retry_after
from device_agent.server.http import Reply

ORIGIN = "http://127.0.0.1:9"
TOKEN = "owl_pat_" + "a" * 32
T = TypeVar("T")

OK_REPORT = Report(
    output="done",
    error=None,
    duration_ms=10,
    exit_code=0,
    exit_signal=None,
    exit_reason=ExitReason.OK,
)


def call(fn: Callable[[LobuClient], Coroutine[Any, Any, T]]) -> T:
    async def go() -> T:
        async with LobuClient(ORIGIN, lambda: TOKEN) as client:
            return await fn(client)

    return asyncio.run(go())


def complete(client: LobuClient) -> Coroutine[Any, Any, Answer]:
    body = WATCHER.completion_body(OK_REPORT, run_id=7, worker_id="w1", attempt=0)
    return client.complete(WATCHER.completion_route(7), body)


POLL_BODY = {"worker_id": "w1", "platform": "headless", "label": "box", "wait_seconds": 0}
COMPLETE_URL = f"{ORIGIN}/api/workers/me/runs/7/complete-watcher"


@respx.mock
def test_requests_carry_token_user_agent_and_json() -> None:
    route = respx.post(f"{ORIGIN}/api/workers/poll").respond(200, json={"next_poll_seconds": 10})
    call(lambda c: c.poll(POLL_BODY))
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["User-Agent"] == USER_AGENT
    body = httpx.Response(200, content=request.content).json()
    assert body == POLL_BODY


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, {"ok": True, "status": "completed"}, AnswerKind.OK),
        (200, {"ok": True, "status": "failed"}, AnswerKind.OK),
        (200, {"ok": True, "status": "completed", "idempotent": True}, AnswerKind.OK),
        (409, {"error": "Run is not in progress"}, AnswerKind.FINAL),
        (409, {"error": "Not a watcher run"}, AnswerKind.FINAL),
        (
            400,
            {"error": "approved_input.window_start must be an ISO timestamp string"},
            AnswerKind.FINAL,
        ),
        (
            400,
            {"error": "approved_input.window_end is not a valid ISO timestamp"},
            AnswerKind.FINAL,
        ),
        (400, {"error": "Invalid runId"}, AnswerKind.REJECTED),
        (400, {"error": "worker_id is required"}, AnswerKind.REJECTED),
        (400, {"error": "Invalid or missing JSON body"}, AnswerKind.REJECTED),
        (403, {"error": "Forbidden"}, AnswerKind.REJECTED),
        (
            403,
            {"error": "worker_id_mismatch", "error_description": "bound to 'x'"},
            AnswerKind.REJECTED,
        ),
        (404, {"error": "Run not found"}, AnswerKind.REJECTED),
        (
            401,
            {"error": "invalid_token", "error_description": "Invalid or expired access token"},
            AnswerKind.AUTH,
        ),
        (401, {"error": "Unauthorized"}, AnswerKind.AUTH),
        (500, {"error": "duplicate key value violates unique constraint"}, AnswerKind.TRANSIENT),
        (502, None, AnswerKind.TRANSIENT),
        (503, {"error": "unavailable"}, AnswerKind.TRANSIENT),
        (429, {"error": "slow down"}, AnswerKind.TRANSIENT),
        (408, None, AnswerKind.TRANSIENT),
        (307, None, AnswerKind.TRANSIENT),  # not followed, not final: retried (issue 21, 8)
        (302, None, AnswerKind.TRANSIENT),
    ],
)
@respx.mock
def test_completion_answers_are_classified(status: int, body: Any, kind: AnswerKind) -> None:
    respx.post(COMPLETE_URL).respond(status, json=body) if body is not None else respx.post(
        COMPLETE_URL
    ).respond(status, text="<html>Bad gateway</html>")
    answer = call(complete)
    assert answer.kind is kind
    assert answer.status == status


@respx.mock
def test_completion_body_matches_protocol() -> None:
    route = respx.post(COMPLETE_URL).respond(200, json={"ok": True, "status": "completed"})
    call(complete)
    sent = httpx.Response(200, content=route.calls.last.request.content).json()
    assert sent == {
        "worker_id": "w1",
        "output": "done",
        "error": None,
        "duration_ms": 10,
        "exit_code": 0,
        "exit_signal": None,
        "exit_reason": "ok",
    }


@respx.mock
def test_unknown_run_type_is_failed_through_the_generic_route() -> None:
    route = respx.post(f"{ORIGIN}/api/workers/complete").respond(200, json={"success": True})
    failed = Report(
        output="",
        error="not handled",
        duration_ms=0,
        exit_code=None,
        exit_signal=None,
        exit_reason=ExitReason.ERROR_MESSAGE,
    )
    lane = UnhandledLane("sync")
    body = lane.completion_body(failed, run_id=5, worker_id="w1", attempt=0)
    answer = call(lambda c: c.complete(lane.completion_route(5), body))
    assert answer.ok
    sent = httpx.Response(200, content=route.calls.last.request.content).json()
    assert sent == {
        "run_id": 5,
        "worker_id": "w1",
        "status": "failed",
        "error_message": "not handled",
    }


@respx.mock
def test_retry_after_seconds_is_read() -> None:
    respx.post(COMPLETE_URL).respond(503, json={"error": "busy"}, headers={"Retry-After": "7"})
    answer = call(complete)
    assert (answer.kind, answer.retry_after) == (AnswerKind.TRANSIENT, 7.0)


def test_retry_after_http_date_is_read() -> None:
    now = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Fri, 27 Nov 2026 09:00:30 GMT", now=lambda: now) == 30.0
    assert parse_retry_after("garbage") is None
    assert parse_retry_after("-4") == 0.0


@respx.mock
def test_garbage_200_body_is_transient() -> None:
    respx.post(f"{ORIGIN}/api/workers/poll").respond(200, text="<html>proxy login</html>")
    answer = call(lambda c: c.poll(POLL_BODY))
    assert answer.kind is AnswerKind.TRANSIENT
    assert "undecodable" in answer.message


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("eof"),
        httpx.DecodingError("broken gzip from a proxy"),
    ],
)
@respx.mock
def test_network_failures_are_transient(error: Exception) -> None:
    respx.post(f"{ORIGIN}/api/workers/poll").mock(side_effect=error)
    answer = call(lambda c: c.poll(POLL_BODY))
    assert answer.kind is AnswerKind.TRANSIENT
    assert answer.status is None


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, {"continue": True}, AnswerKind.OK),
        (409, {"error": "Run is not in progress"}, AnswerKind.FINAL),
        (404, {"error": "Run not found"}, AnswerKind.FINAL),
        (403, {"error": "Forbidden"}, AnswerKind.FINAL),
        (500, {"error": "boom"}, AnswerKind.TRANSIENT),
        (401, {"error": "invalid_token"}, AnswerKind.AUTH),
    ],
)
@respx.mock
def test_heartbeat_answers_are_classified(status: int, body: Any, kind: AnswerKind) -> None:
    respx.post(f"{ORIGIN}/api/workers/heartbeat").respond(status, json=body)
    assert call(lambda c: c.heartbeat(run_id=1, worker_id="w1")).kind is kind


@respx.mock
def test_poll_rejections_keep_the_servers_words() -> None:
    respx.post(f"{ORIGIN}/api/workers/poll").respond(
        403,
        json={
            "error": "worker_id_mismatch",
            "error_description": "this token is bound to worker_id 'mac:1'",
        },
    )
    answer = call(lambda c: c.poll(POLL_BODY))
    assert answer.kind is AnswerKind.REJECTED
    assert answer.message == "worker_id_mismatch: this token is bound to worker_id 'mac:1'"


@respx.mock
def test_trigger_posts_to_the_watcher_route() -> None:
    route = respx.post(f"{ORIGIN}/api/workers/me/watchers/12/trigger").respond(
        200, json={"run_id": 3, "status": "pending", "already_queued": False}
    )
    answer = call(lambda c: c.trigger(WATCHER.trigger_route("12")))
    assert answer.ok
    assert route.called


@respx.mock
def test_redirects_are_not_followed() -> None:
    respx.post(f"{ORIGIN}/api/workers/poll").respond(302, headers={"Location": "http://evil/"})
    evil = respx.post("http://evil/").respond(200, json={})
    answer = call(lambda c: c.poll(POLL_BODY))
    assert answer.kind is AnswerKind.REJECTED
    assert answer.message == "redirected to 'http://evil/', which is not followed"
    assert not evil.called


@pytest.mark.parametrize("status", [307, 302])
@respx.mock
def test_a_redirected_result_report_is_not_followed_and_not_final(status: int) -> None:
    """Issue 21, point 8: the token stays home, and the result is tried again later."""
    respx.post(COMPLETE_URL).respond(status, headers={"Location": "http://evil/take"})
    evil = respx.post("http://evil/take").respond(200, json={"ok": True})
    answer = call(complete)
    assert answer.kind is AnswerKind.TRANSIENT
    assert answer.status == status
    assert not evil.called


@respx.mock
def test_a_large_result_gets_time_to_go_up_a_slow_link(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4 MiB output must not time out on every try over a slow uplink: the completion's
    overall deadline grows with what it carries."""
    from device_agent.server import client as client_module

    deadlines: list[float] = []
    real_fetch = client_module.fetch

    async def recording_fetch(*args: Any, deadline: float, **kwargs: Any) -> Reply:
        deadlines.append(deadline)
        return await real_fetch(*args, deadline=deadline, **kwargs)

    monkeypatch.setattr(client_module, "fetch", recording_fetch)
    respx.post(COMPLETE_URL).respond(200, json={"ok": True, "status": "completed"})
    large = dataclasses.replace(OK_REPORT, output="x" * (4 * 1024 * 1024))

    def complete_with(report: Report) -> Callable[[LobuClient], Coroutine[Any, Any, Answer]]:
        body = WATCHER.completion_body(report, run_id=7, worker_id="w1", attempt=0)
        return lambda client: client.complete(WATCHER.completion_route(7), body)

    assert call(complete_with(OK_REPORT)).ok
    assert call(complete_with(large)).ok
    small_deadline, large_deadline = deadlines
    assert small_deadline < 60
    # 4 MiB at 16 KiB/s: four more minutes.
    assert large_deadline - small_deadline >= 4 * 1024 * 1024 / (16 * 1024) - 1
