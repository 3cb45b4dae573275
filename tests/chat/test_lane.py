"""The chat lane behind the `Lane` interface: wiring, review, the report and its answers."""

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
from device_agent.lanes import LANES, RUN_NOW_LANES, Done, lane_for, trigger_lane
from device_agent.lanes.chat.lane import (
    CHAT,
    HEARTBEAT_409,
    MAX_REPLY_BYTES,
    STOPPED_BY,
    TRUNCATED_REPLY,
    bounded_reply,
)
from device_agent.server.client import Answer, AnswerKind, LobuClient

from .claims import DELETE, MCP_URL, SESSION_TOKEN, claim

SERVER = "http://127.0.0.1:8787"  # the configured server; the session's mcp_url is on it

DEVICE = McpWiring(url="http://127.0.0.1:8787/mcp", token="owl_pat_DeviceToken000000000000000001")
ORIGIN = "http://127.0.0.1:9"
ROUTE = "/api/workers/me/runs/901/complete-chat"


def request(kind: str = "claude-code") -> ExecutionRequest:
    return ExecutionRequest(run_id=901, agent_kind=kind, prompt="p", mcp=DEVICE)


def report(**changes: Any) -> Report:
    base = Report("Atlas: nothing new.", None, 1200, 0, None, ExitReason.OK)
    return dataclasses.replace(base, **changes)


def body_of(result: Report) -> dict[str, Any]:
    return CHAT.completion_body(result, run_id=901, worker_id="w", attempt=0)


def test_the_lane_is_registered_for_chat_message_without_a_run_now() -> None:
    assert LANES["chat_message"] is CHAT
    assert lane_for("chat_message") is CHAT
    assert CHAT.completion_route(901) == ROUTE
    assert not CHAT.may_resume
    assert "chat_message" not in RUN_NOW_LANES
    with pytest.raises(ValueError, match="no Run now"):
        CHAT.trigger_route("conv-1")
    with pytest.raises(ValueError, match="no Run now"):
        trigger_lane(None, "chat_message")


def test_a_session_is_the_only_credential_the_cli_gets_as_in_the_automation_lane() -> None:
    wired = CHAT.parse(claim()).wire(request(), server=SERVER)
    assert wired.mcp == McpWiring(url=MCP_URL, token=SESSION_TOKEN)
    assert wired.env == {"LOBU_API_TOKEN": SESSION_TOKEN, "LOBU_MEMORY_URL": MCP_URL}
    assert SESSION_TOKEN in wired.secrets
    assert wired.args == ()  # which tools a CLI may call is its profile's [mcp] business
    assert not CHAT.parse(claim()).uses_device_tools


def test_without_a_session_the_device_wiring_stays() -> None:
    run = CHAT.parse(claim({"context.agent_session": DELETE}))
    assert run.uses_device_tools
    wired = run.wire(request("codex"), server=SERVER)
    assert (wired.mcp, wired.env, wired.args) == (DEVICE, {}, ())


def test_the_turn_is_named_by_the_conversations_first_words() -> None:
    run = CHAT.parse(claim())
    assert run.name == "chat: Remember project Atlas."
    assert run.item_id == "conv-1"
    assert run.agent_kind == "claude-code"
    assert run.execution_config == {"timeout_seconds": 120, "model": "sonnet"}
    first = CHAT.parse(
        claim(
            {
                "chat.history": [],
                "chat.message": "Please   look at\nthe release notes of every library we use today",
                "context.agent_session": DELETE,
            }
        )
    )
    assert first.name == "chat: Please look at the release notes of every…"
    assert first.item_id == "agent:agent-1"
    assert CHAT.parse(claim({"chat.history": [], "chat.message": " "})).name == (
        "chat: (empty message)"
    )


def test_an_empty_reply_is_a_failure_that_says_so() -> None:
    run = CHAT.parse(claim())
    for empty in ("", " \n\t"):
        reviewed = run.review(report(output=empty))
        assert reviewed.error == (
            "claude-code returned no reply: the CLI exited cleanly but printed an empty answer, "
            "so there is nothing to post to the conversation"
        )
        assert reviewed.exit_reason is ExitReason.ERROR_MESSAGE
        assert body_of(reviewed)["error"] == reviewed.error
    assert run.review(report()) == report()  # a reply passes as it is
    failed = report(output="", error="claude exited with status 1", exit_code=1)
    assert run.review(failed) is failed  # its own error is the better one


def test_a_reply_is_reported_with_a_null_error() -> None:
    assert body_of(report(output="  Atlas: nothing new.\n")) == {
        "worker_id": "w",
        "output": "Atlas: nothing new.",
        "error": None,
        "exit_code": 0,
        "exit_signal": None,
        "exit_reason": "ok",
    }


def test_a_failure_is_reported_with_its_error_and_exit() -> None:
    body = body_of(
        report(
            output="partial",
            error="claude exited with status 2: quota exceeded",
            exit_code=2,
            exit_reason=ExitReason.ERROR_MESSAGE,
        )
    )
    assert body["error"] == "claude exited with status 2: quota exceeded"
    assert (body["exit_code"], body["exit_reason"]) == (2, "error_message")
    timed_out = body_of(
        report(
            output="",
            error=None,
            exit_code=None,
            exit_signal="SIGTERM",
            exit_reason=ExitReason.TIMEOUT,
        )
    )
    assert timed_out["error"] == "the CLI ended with timeout"  # never a null error on a failure
    assert body_of(failure("x" * 5000))["error"] == "x" * 2000


def test_the_reply_is_bounded_at_a_character_boundary() -> None:
    reply = bounded_reply("é" * MAX_REPLY_BYTES)  # two bytes each: twice the bound
    assert reply.endswith(TRUNCATED_REPLY)
    assert len(reply.encode()) <= MAX_REPLY_BYTES
    assert set(reply.removesuffix(TRUNCATED_REPLY)) == {"é"}
    assert bounded_reply("a\x00b") == "a\ufffdb"


def test_a_heartbeat_409_is_reported_as_cancelled_with_the_signal_used() -> None:
    killed = report(
        exit_reason=ExitReason.CANCELLED,
        exit_code=None,
        exit_signal="SIGTERM",
        error="run cancelled: stopped by the device agent",
    )
    last_word = CHAT.after_loss(killed)
    assert last_word is not None
    assert last_word.details[STOPPED_BY] == HEARTBEAT_409
    body = body_of(last_word)
    assert body["exit_reason"] == "cancelled"
    assert body["exit_signal"] == "SIGTERM"
    assert body["error"].startswith("cancelled: the server ended this chat turn")
    finished = report()  # the CLI had answered before the 409 came: its own result
    assert CHAT.after_loss(finished) is finished


@pytest.mark.parametrize(
    "answer",
    [
        {"ok": True, "status": "completed"},
        {"ok": True, "status": "failed", "idempotent": True},
        {"unexpected": "shape"},
        ["not", "an", "object"],
    ],
)
def test_every_answer_ends_the_turn(answer: Any) -> None:
    assert CHAT.read_completion(Answer(AnswerKind.OK, 200, answer, ""), attempt=0) == Done()


def test_the_same_body_is_sent_again_until_the_server_answers_for_good(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite3")
    journal.record_claim(
        ORIGIN,
        901,
        run_type="chat_message",
        watcher_id="conv-1",
        watcher_name="chat: Remember project Atlas.",
        agent_kind="claude-code",
        payload_digest="d",
    )
    journal.record_result(ORIGIN, 901, report(output="", error="claude returned no reply"))

    async def go() -> list[bytes]:
        async_journal = AsyncJournal(journal)
        with respx.mock(base_url=ORIGIN) as mock:
            posts = mock.post(ROUTE).mock(
                side_effect=[
                    httpx.Response(503, json={"error": "deploying"}),
                    httpx.ConnectError("refused"),
                    httpx.Response(200, json={"ok": True, "status": "failed"}),
                ]
            )
            async with LobuClient(ORIGIN, lambda: "owl_pat_" + "o" * 32) as client:
                outbox = Outbox(
                    client,
                    async_journal,
                    server=ORIGIN,
                    worker_id="w",
                    server_error_budget=8,
                    max_backoff=0.01,
                )
                await outbox.flush()
            sent = [call.request.content for call in posts.calls]
        async_journal.close()
        return sent

    sent = asyncio.run(go())
    assert len(sent) == 3
    assert len(set(sent)) == 1  # byte for byte the same report each time
    assert json.loads(sent[0])["error"] == "claude returned no reply"
    reopened = Journal(tmp_path / "journal.sqlite3")
    entry = reopened.get(ORIGIN, 901)
    reopened.close()
    assert entry is not None
    assert (entry.state, entry.answer, entry.run_type) == ("acknowledged", "failed", "chat_message")


@pytest.mark.parametrize(
    ("status", "body", "state"),
    [
        (404, {"error": "Device chat run not found"}, "dead"),
        (403, {"error": "Forbidden"}, "dead"),
        (400, {"error": "Invalid device chat completion body"}, "dead"),
        (409, {"error": "Run is not device-placed"}, "acknowledged"),
    ],
)
def test_refusals_are_final_and_kept_in_the_journal(
    tmp_path: Path, status: int, body: dict[str, str], state: str
) -> None:
    journal = Journal(tmp_path / "journal.sqlite3")
    journal.record_claim(
        ORIGIN,
        901,
        run_type="chat_message",
        watcher_id="conv-1",
        watcher_name="chat: hi",
        agent_kind="claude-code",
        payload_digest="d",
    )
    journal.record_result(ORIGIN, 901, report())

    async def go() -> int:
        async_journal = AsyncJournal(journal)
        with respx.mock(base_url=ORIGIN) as mock:
            posts = mock.post(ROUTE).mock(return_value=httpx.Response(status, json=body))
            async with LobuClient(ORIGIN, lambda: "owl_pat_" + "o" * 32) as client:
                outbox = Outbox(
                    client,
                    async_journal,
                    server=ORIGIN,
                    worker_id="w",
                    server_error_budget=8,
                    max_backoff=0.01,
                )
                await outbox.flush()
            calls = len(posts.calls)
        async_journal.close()
        return calls

    assert asyncio.run(go()) == 1  # never retried
    reopened = Journal(tmp_path / "journal.sqlite3")
    entry = reopened.get(ORIGIN, 901)
    reopened.close()
    assert entry is not None
    assert entry.state == state
    assert body["error"] in (entry.server_message or "")
