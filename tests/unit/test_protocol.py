from __future__ import annotations

from typing import Any

import pytest

from device_agent.agent.result import ExitReason, Report
from device_agent.lanes import UnhandledLane, lane_for
from device_agent.lanes.base import read_claim
from device_agent.lanes.watcher.lane import WATCHER
from device_agent.server.protocol import (
    Idle,
    PayloadError,
    claim_in_head,
    parse_poll,
    parse_watcher_run,
)
from tests.support.claims import DELETE, watcher_claim


def test_poll_claim_shape_is_read() -> None:
    parsed = watcher_claim()
    assert (parsed.run_id, parsed.run_type, parsed.organization_id) == (4711, "watcher", "org_1")


def test_poll_idle_honours_next_poll_seconds() -> None:
    assert parse_poll({"next_poll_seconds": 30}) == Idle(30.0)


def test_poll_idle_without_interval_uses_default() -> None:
    assert parse_poll({}) == Idle(10.0)


def test_a_run_id_of_digits_int_cannot_read_is_a_payload_error_not_a_crash() -> None:
    # "²" and "①" are digits to str.isdigit(), not to int(): a poll answer carrying one must
    # be an unusable answer (PayloadError), never a ValueError that ends the poll loop.
    for odd in ("²", "①"):
        with pytest.raises(PayloadError):
            parse_poll({"run_id": odd, "run_type": "watcher", "payload": {}})
        parsed = parse_poll({"next_poll_seconds": 1, "skipped_run_id": odd})
        assert isinstance(parsed, Idle)
        assert parsed.skipped_run_id is None


def test_poll_skipped_run_is_idle_with_the_servers_message() -> None:
    parsed = parse_poll({"next_poll_seconds": 1, "skipped_run_id": 9, "error": "bad watcher"})
    assert parsed == Idle(1.0, skipped_run_id=9, error="bad watcher")


@pytest.mark.parametrize("body", [None, [], "text", 42, {"run_id": "abc"}, {"run_id": None}])
def test_poll_garbage_raises_payload_error(body: Any) -> None:
    with pytest.raises(PayloadError):
        parse_poll(body)


@pytest.mark.parametrize(("value", "seconds"), [(0, 0.5), (86400, 3600.0), (2.5, 2.5)])
def test_poll_interval_is_honoured_within_bounds(value: float, seconds: float) -> None:
    assert parse_poll({"next_poll_seconds": value}) == Idle(seconds)


@pytest.mark.parametrize("value", [-5, "soon", True])
def test_poll_bad_interval_falls_back_to_default(value: Any) -> None:
    assert parse_poll({"next_poll_seconds": value}).next_poll_seconds == 10.0  # type: ignore[union-attr]


def test_watcher_run_is_parsed() -> None:
    run = parse_watcher_run(watcher_claim())
    assert run.watcher.id == "123"
    assert run.watcher.prompt == "Summarise my inbox."
    assert run.watcher.execution_config == {"timeout_seconds": 120, "model": "m1"}
    assert run.event.window_start == "2026-11-27T08:00:00.000Z"
    assert run.event.dispatch_source == "scheduled"
    assert run.agent_kind == "claude-code"


def test_numeric_watcher_id_becomes_a_string() -> None:
    assert parse_watcher_run(watcher_claim({"watcher.id": 7})).watcher.id == "7"


def test_agent_kind_falls_back_to_approved_input() -> None:
    run = watcher_claim({"watcher.agent_kind": None, "event.payload.agent_kind": "codex"})
    assert parse_watcher_run(run).agent_kind == "codex"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("watcher", DELETE, "payload.watcher is missing"),
        ("watcher", "oops", "payload.watcher is missing or not an object"),
        ("event", None, "payload.event is missing"),
        ("watcher.id", None, "payload.watcher.id"),
        ("watcher.prompt", 12, "payload.watcher.prompt must be a string"),
        ("watcher.execution_config", [1], "execution_config is missing or not an object"),
        ("event.payload.window_start", None, "window_start must be an ISO timestamp"),
        ("event.payload.window_end", "yesterday", "window_end is not a valid ISO"),
    ],
)
def test_malformed_watcher_payload_names_the_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_watcher_run(watcher_claim({path: value}))


def test_payload_that_is_not_an_object_fails_clearly() -> None:
    with pytest.raises(PayloadError, match="payload is missing or not an object"):
        parse_watcher_run(watcher_claim({"payload": "garbage"}))


def test_report_bodies_follow_the_protocol() -> None:
    report = Report(
        output="hi",
        error=None,
        duration_ms=-3,
        exit_code=0,
        exit_signal=None,
        exit_reason=ExitReason.OK,
    )
    assert WATCHER.completion_body(report, run_id=3, worker_id="w1", attempt=0) == {
        "worker_id": "w1",
        "output": "hi",
        "error": None,
        "duration_ms": 0,
        "exit_code": 0,
        "exit_signal": None,
        "exit_reason": "ok",
    }
    failed = Report(
        output="",
        error="boom",
        duration_ms=5,
        exit_code=1,
        exit_signal=None,
        exit_reason=ExitReason.ERROR_MESSAGE,
    )
    assert UnhandledLane("sync").completion_body(failed, run_id=3, worker_id="w1", attempt=0) == {
        "run_id": 3,
        "worker_id": "w1",
        "status": "failed",
        "error_message": "boom",
    }


WHY = "not run: too large"


@pytest.mark.parametrize(
    "head",
    [
        b'{"run_id":812,"run_type":"chat_message","organization_id":"o","payload":{"mess',
        # An upstream server writes its own metadata first.
        b'{"server_time":"2026-12-08T00:00:00Z","run_id":812,"run_type":"chat_message",'
        b'"payload":{"run_id":1,"run_type":"watcher","message":"xx',
        b'{ "run_id": 812, "run_type": "chat_message", "payload": {"x',
    ],
)
def test_the_run_of_an_answer_too_large_to_read_is_named_by_its_head(head: bytes) -> None:
    claim = claim_in_head(head, WHY)
    assert claim is not None
    assert (claim.run_id, claim.run_type, claim.unreadable) == (812, "chat_message", WHY)
    assert read_claim(lane_for(claim.run_type), claim) == WHY


@pytest.mark.parametrize(
    "head",
    [
        b'{"next_poll_seconds":1,"skipped_run_id":812,"error":"xxxxxxxx',  # not a claim
        b'{"payload":{"run_id":1,"run_type":"watcher"},"run_id":812,"run_type":"x"}',
        b'{"run_type":"chat_message","organization_id":"o","payload":{"run_id":5',
        b'"xxxxxxxx',  # not an object at all
        b"",
    ],
)
def test_a_head_that_names_no_run_before_its_payload_is_no_claim(head: bytes) -> None:
    assert claim_in_head(head, WHY) is None
