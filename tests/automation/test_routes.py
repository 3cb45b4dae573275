"""Runs this agent does not execute are failed through their own lane's route."""

from __future__ import annotations

import pytest

from device_agent.lanes.routes import trigger_route, unhandled_failure


def test_each_lane_has_its_run_now_route() -> None:
    assert trigger_route("automation", "42") == "/api/workers/me/automations/42/trigger"
    assert trigger_route("watcher", "7") == "/api/workers/me/watchers/7/trigger"


def test_an_unknown_lane_has_no_run_now() -> None:
    with pytest.raises(ValueError, match="no Run now"):
        trigger_route("chat_message", "1")


def test_an_automation_is_failed_through_complete_automation() -> None:
    report = unhandled_failure("automation", 812, worker_id="w", error="bad payload")
    assert report.route == "/api/workers/me/runs/812/complete-automation"
    assert report.body["error"] == "bad payload"
    assert report.body["exit_reason"] == "error_message"
    assert report.body["finalize_attempt"] == 0


def test_a_chat_message_is_failed_through_complete_chat() -> None:
    report = unhandled_failure("chat_message", 9, worker_id="w", error="no chat here")
    assert report.route == "/api/workers/me/runs/9/complete-chat"
    assert report.body == {
        "worker_id": "w",
        "error": "no chat here",
        "exit_reason": "error_message",
    }


def test_an_action_is_failed_through_complete_action() -> None:
    report = unhandled_failure("action", 10, worker_id="w", error="no actions here")
    assert report.route == "/api/workers/complete-action"
    assert report.body == {
        "run_id": 10,
        "worker_id": "w",
        "status": "failed",
        "error_message": "no actions here",
    }


def test_anything_else_is_failed_through_the_generic_route() -> None:
    for run_type in ("sync", "auth", "embed_backfill", "agent_turn", "'weird'"):
        report = unhandled_failure(run_type, 11, worker_id="w", error="not handled\x00")
        assert report.route == "/api/workers/complete"
        assert report.body["status"] == "failed"
        assert report.body["error_message"] == "not handled\ufffd"
