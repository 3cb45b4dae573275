"""The automation lane behind the `Lane` interface: wiring, exit report, answer table."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from device_agent.agent.journal import Journal
from device_agent.agent.journal_thread import AsyncJournal
from device_agent.agent.outbox import Outbox
from device_agent.agent.result import ExitReason, Report, failure
from device_agent.executors.request import ExecutionRequest, McpWiring
from device_agent.lanes import LANES, Done, Fail, Resume, UnhandledLane, lane_for
from device_agent.lanes.automation.lane import AUTOMATION, HEARTBEAT_409, STOPPED_BY
from device_agent.server.client import Answer, AnswerKind, LobuClient
from device_agent.server.protocol import PayloadError
from tests.support.claims import DELETE, MCP_URL, SESSION_TOKEN, automation_claim

SERVER = "http://127.0.0.1:8787"
DEVICE = McpWiring(url="http://127.0.0.1:8787/mcp", token="owl_pat_DeviceToken000000000000000001")


def request(kind: str = "claude-code") -> ExecutionRequest:
    return ExecutionRequest(run_id=812, agent_kind=kind, prompt="p", mcp=DEVICE)


def ok(body: Any) -> Answer:
    return Answer(AnswerKind.OK, 200, body, "")


def report(**changes: Any) -> Report:
    base = Report("out", None, 1200, 0, None, ExitReason.OK)
    return dataclasses.replace(base, **changes)


def test_the_lane_is_registered_for_its_run_type() -> None:
    assert LANES["automation"] is AUTOMATION
    assert lane_for("automation") is AUTOMATION
    assert AUTOMATION.trigger_route("42") == "/api/workers/me/automations/42/trigger"


def test_a_session_replaces_the_device_credential() -> None:
    wired = AUTOMATION.parse(automation_claim()).wire(request(), server=SERVER)
    assert wired.mcp == McpWiring(url=MCP_URL, token=SESSION_TOKEN)
    assert wired.env == {"LOBU_API_TOKEN": SESSION_TOKEN, "LOBU_MEMORY_URL": MCP_URL}
    assert SESSION_TOKEN in wired.secrets
    assert wired.args == ()  # the tools a CLI may call come with its profile's [mcp]


def test_without_a_session_the_device_wiring_stays() -> None:
    run = AUTOMATION.parse(automation_claim({"context.agent_session": DELETE}))
    wired = run.wire(request("codex"), server=SERVER)
    assert wired.mcp == DEVICE
    assert wired.env == {}
    assert wired.args == ()


def test_a_session_url_the_token_must_not_go_to_is_refused_by_the_lane() -> None:
    run = AUTOMATION.parse(automation_claim({"context.agent_session.mcp_url": "http://evil.example/mcp"}))
    with pytest.raises(PayloadError, match=r"unencrypted to evil\.example"):
        run.wire(request(), server=SERVER)


def test_the_prompt_gets_the_nudge_on_a_resume_round() -> None:
    run = AUTOMATION.parse(automation_claim())
    assert "FINALIZE NUDGE" not in run.prompt(None)
    assert "Finalize now." in run.prompt("Finalize now.")


def test_an_ordinary_exit_report() -> None:
    body = AUTOMATION.completion_body(report(), run_id=812, worker_id="w", attempt=2)
    assert body["exit_reason"] == "ok"
    assert body["error"] is None
    assert body["finalize_attempt"] == 2


def test_after_a_heartbeat_409_the_report_says_ok_with_the_signal_used() -> None:
    killed = report(exit_reason=ExitReason.CANCELLED, exit_signal="SIGTERM", error="cancelled")
    last_word = AUTOMATION.after_loss(killed)
    assert last_word is not None
    assert last_word.details[STOPPED_BY] == HEARTBEAT_409
    body = AUTOMATION.completion_body(last_word, run_id=812, worker_id="w", attempt=0)
    assert (body["exit_reason"], body["exit_signal"], body["error"]) == ("ok", "SIGTERM", None)


def test_a_cli_that_exited_by_itself_after_a_409_reports_its_real_exit() -> None:
    assert AUTOMATION.after_loss(report(exit_code=3, error="boom")) == report(
        exit_code=3, error="boom"
    )


def test_shutdown_is_reported_as_cancelled_without_an_error() -> None:
    stopped = failure("device-agent was shut down", exit_reason=ExitReason.CANCELLED)
    body = AUTOMATION.completion_body(stopped, run_id=812, worker_id="w", attempt=1)
    assert (body["exit_reason"], body["error"]) == ("cancelled", None)


@pytest.mark.parametrize(
    "body",
    [
        {"ok": True, "status": "completed"},
        {"ok": True, "status": "completed", "reason_code": "event_turn"},
        {"ok": True, "status": "failed", "error": "x"},
        {"ok": True, "status": "cancelled", "idempotent": True},
        {"ok": True, "status": "timeout"},
        {"ok": True},  # no status: delivered, decision unknown
    ],
)
def test_terminal_answers_end_the_run(body: dict[str, Any]) -> None:
    assert AUTOMATION.read_completion(ok(body), attempt=0) == Done()


def test_resume_asks_for_the_next_round_with_the_nudge() -> None:
    body = {"ok": True, "status": "resume", "attempt": 1, "max_attempts": 2, "nudge": "Finalize"}
    assert AUTOMATION.read_completion(ok(body), attempt=0) == Resume(attempt=1, nudge="Finalize")


def test_a_resume_that_does_not_move_forward_is_refused() -> None:
    body = {"ok": True, "status": "resume", "attempt": 1, "nudge": "again"}
    verdict = AUTOMATION.read_completion(ok(body), attempt=1)
    assert isinstance(verdict, Fail)
    assert "no round runs twice" in verdict.error


@pytest.mark.parametrize(
    ("run_type", "route", "error_key"),
    [
        ("action", "/api/workers/complete-action", "error_message"),
        ("sync", "/api/workers/complete", "error_message"),
    ],
)
def test_unhandled_run_types_are_failed_through_their_own_route(
    run_type: str, route: str, error_key: str
) -> None:
    lane = lane_for(run_type)
    assert isinstance(lane, UnhandledLane)
    assert lane.completion_route(9) == route
    body = lane.completion_body(failure("not here"), run_id=9, worker_id="w", attempt=0)
    assert body[error_key] == "not here"


def test_a_resume_answered_to_a_result_sent_after_a_restart_is_reported_as_interrupted(
    tmp_path: Path,
) -> None:
    """No run task waits for this result, so the round the server asks for is not run: it is
    reported once, as interrupted, with the attempt the server named."""
    origin, route = "http://127.0.0.1:9", "/api/workers/me/runs/812/complete-automation"
    journal = Journal(tmp_path / "journal.sqlite3")
    journal.record_claim(
        origin,
        812,
        run_type="automation",
        watcher_id="42",
        watcher_name="Inbox triage",
        agent_kind="claude-code",
        payload_digest="d",
    )
    journal.record_result(origin, 812, report())
    resume = {"ok": True, "status": "resume", "attempt": 1, "max_attempts": 2, "nudge": "Do it"}

    async def go() -> list[dict[str, Any]]:
        async_journal = AsyncJournal(journal)
        with respx.mock(base_url=origin) as mock:
            posts = mock.post(route).mock(
                side_effect=[
                    httpx.Response(200, json=resume),
                    httpx.Response(200, json={"ok": True, "status": "failed"}),
                ]
            )
            async with LobuClient(origin, lambda: "owl_pat_" + "o" * 32) as client:
                outbox = Outbox(
                    client,
                    async_journal,
                    server=origin,
                    worker_id="w",
                    server_error_budget=8,
                    max_backoff=0.01,
                )
                await outbox.flush()
            bodies = [json.loads(call.request.content) for call in posts.calls]
        async_journal.close()
        return bodies

    first, second = asyncio.run(go())
    assert (first["finalize_attempt"], first["exit_reason"]) == (0, "ok")
    assert (second["finalize_attempt"], second["exit_reason"]) == (1, "crash")
    assert "between rounds" in second["error"]
    reopened = Journal(tmp_path / "journal.sqlite3")
    entry = reopened.get(origin, 812)
    reopened.close()
    assert entry is not None
    assert (entry.state, entry.answer) == ("acknowledged", "failed")
