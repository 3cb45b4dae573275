"""The chat lane end to end: the agent in-process against the dev server's device chats, with
a fake Claude Code that answers the current user message."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from device_agent.agent.poll_loop import PollLoop
from device_agent.devserver import DevServer, DevState
from device_agent.errors import ExitCode
from tests.support.agent import journal_rows
from tests.support.lanelab import LaneLab, open_lane_lab
from tests.support.processes import alive
from tests.support.waiting import wait_for, wait_for_async

WORKER = "headless:chatlane"


class ChatLab(LaneLab):
    def conversation(self, **kw: Any) -> str:
        return self.state.add_conversation(WORKER, **kw)

    def prompts(self) -> list[str]:
        logged = [json.loads(p.read_text()) for p in sorted(self.cli_log.glob("*.json"))]
        return [entry["prompt"] for entry in logged]

    def seen(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.reports.read_text())
        return data

    @asynccontextmanager
    async def agent(self, **overrides: Any) -> AsyncIterator[PollLoop]:
        async with self.running(**overrides) as (_, agent):
            yield agent


@pytest.fixture
def chat(tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> ChatLab:
    return open_lane_lab(
        ChatLab,
        fake="claude_chat",
        worker=WORKER,
        reports="seen.json",
        tmp_path=tmp_path,
        home=isolated_home,
        monkeypatch=monkeypatch,
    )


def answered(state: DevState, run_id: int) -> Callable[[], bool]:
    """The turn is over on the server and the agent has its answer in the journal."""

    def done() -> bool:
        return state.run(run_id).terminal and state.run(run_id).completion_attempts > 0

    return done


def acknowledged(home: Path, run_id: int) -> Callable[[], bool]:
    return lambda: journal_rows(home).get(run_id, {}).get("state") == "acknowledged"


def test_a_two_turn_conversation_carries_the_first_exchange_into_the_second_prompt(
    chat: ChatLab,
) -> None:
    async def go() -> None:
        conversation = chat.conversation(agent_name="Researcher")
        async with chat.agent():
            first = chat.state.post_message(conversation, "Remember project Atlas.")
            await wait_for_async(acknowledged(chat.home, first), what="the first turn")
            second = chat.state.post_message(conversation, "What is my project called?")
            await wait_for_async(acknowledged(chat.home, second), what="the second turn")
        assert [chat.state.run(r).status for r in (first, second)] == ["completed", "completed"]
        one, two = chat.prompts()
        assert "## Recent conversation" not in one
        assert "You are executing one chat turn for the Lobu agent Researcher." in one
        assert (
            "## Recent conversation\n\n```text\nUser: Remember project Atlas.\n\n"
            "Assistant: You said: Remember project Atlas.\n```"
        ) in two
        assert two.endswith("## Current user message\n\n```text\nWhat is my project called?\n```")
        assert chat.state.conversation(conversation).history[-1] == {
            "role": "assistant",
            "content": "You said: What is my project called?",
        }
        rows = journal_rows(chat.home)
        for run_id in (first, second):
            row = rows[run_id]
            assert (row["run_type"], row["state"], row["error"]) == (
                "chat_message",
                "acknowledged",
                None,
            )
            assert row["watcher_name"] == "chat: Remember project Atlas."  # the first words
            assert row["watcher_id"] == conversation
            assert row["answer"] == "completed"

    asyncio.run(go())


def test_a_turn_runs_with_the_turns_own_session_and_never_the_device_token(
    chat: ChatLab,
) -> None:
    async def go() -> None:
        run_id = chat.state.post_message(chat.conversation(), "hello")
        async with chat.agent():
            await wait_for_async(acknowledged(chat.home, run_id), what="the turn")
        session = chat.state.run(run_id).session_token
        assert session is not None
        seen = chat.seen()
        assert seen["env"]["LOBU_API_TOKEN"] == session
        assert seen["env"]["LOBU_MEMORY_URL"].endswith("/mcp/dev")
        assert seen["mcp"]["content"]["mcpServers"]["lobu"]["headers"] == {
            "Authorization": f"Bearer {session}"
        }
        assert seen["mcp"]["mode"] == "0o600"
        assert "--allowedTools" in seen["argv"]
        assert chat.token not in json.dumps(seen)

    asyncio.run(go())


def test_a_failing_cli_is_reported_as_a_failure_with_its_error(chat: ChatLab) -> None:
    async def go() -> None:
        run_id = chat.state.post_message(chat.conversation(), "please [[fail]]")
        async with chat.agent():
            await wait_for_async(acknowledged(chat.home, run_id), what="the failure report")
        run = chat.state.run(run_id)
        assert run.status == "failed"
        assert run.error == "Credit balance is too low"
        assert run.exit_code == 1
        assert run.exit_reason == "error_message"
        row = journal_rows(chat.home)[run_id]
        assert (row["error"], row["answer"]) == ("Credit balance is too low", "failed")

    asyncio.run(go())


def test_an_empty_reply_fails_the_turn_with_a_message_that_says_so(chat: ChatLab) -> None:
    async def go() -> None:
        conversation = chat.conversation()
        run_id = chat.state.post_message(conversation, "say nothing [[empty]]")
        async with chat.agent():
            await wait_for_async(acknowledged(chat.home, run_id), what="the failure report")
        run = chat.state.run(run_id)
        assert run.status == "failed"
        assert run.error == (
            "claude-code returned no reply: the CLI exited cleanly but printed an empty answer, "
            "so there is nothing to post to the conversation"
        )  # the agent's words, not the server's fallback
        assert journal_rows(chat.home)[run_id]["error"] == run.error
        assert chat.state.conversation(conversation).history == []

    asyncio.run(go())


def test_a_heartbeat_409_stops_the_cli_and_the_report_says_cancelled(chat: ChatLab) -> None:
    async def go() -> None:
        run_id = chat.state.post_message(chat.conversation(), "think forever [[hang]]")
        async with chat.agent():
            await wait_for_async(chat.reports.exists, what="the CLI to start")
            pid = chat.seen()["pid"]
            chat.state.cancel_run(run_id)  # the person cancelled: heartbeats now get 409
            await wait_for_async(lambda: not alive(pid), what="the CLI to be stopped")
            await wait_for_async(acknowledged(chat.home, run_id), what="the report")
        assert chat.state.run(run_id).status == "cancelled"
        reports = [r for r in chat.state.requests if r.path.endswith("/complete-chat")]
        assert len(reports) == 1
        row = journal_rows(chat.home)[run_id]
        assert row["exit_reason"] == "cancelled"
        assert row["error"].startswith("cancelled: the server ended this chat turn")
        assert row["exit_signal"] in ("SIGTERM", "SIGKILL")
        assert json.loads(row["details"])["stopped_by"] == "heartbeat_409"
        assert row["answer"] == "failed (idempotent)"  # the server already owned the outcome
        assert len(chat.prompts()) == 1

    asyncio.run(go())


def test_execution_config_timeout_seconds_is_honoured(chat: ChatLab) -> None:
    async def go() -> None:
        conversation = chat.conversation(execution_config={"timeout_seconds": 1})
        run_id = chat.state.post_message(conversation, "slow [[hang]]")
        async with chat.agent():
            await wait_for_async(acknowledged(chat.home, run_id), what="the timeout report")
            pid = chat.seen()["pid"]
        assert not alive(pid)
        run = chat.state.run(run_id)
        assert (run.status, run.exit_reason) == ("failed", "timeout")
        assert (run.error or "").startswith("timed out after 1 s")

    asyncio.run(go())


def test_a_bad_payload_fails_that_turn_only(chat: ChatLab) -> None:
    """Wrong shapes and a message over its bound are each reported failed through
    complete-chat; the good turn queued behind them is answered."""
    bad_turns = {
        "history entries of the wrong shape": {"history": ["User: hi", {"role": "system"}]},
        "a message over 32,000 characters": {"message": "x" * (3 * 1024 * 1024)},
    }

    async def go() -> None:
        raw = {
            why: chat.state.queue_raw_run(WORKER, "chat_message", _raw_chat(**changes))
            for why, changes in bad_turns.items()
        }
        good = chat.state.post_message(chat.conversation(), "Still there?")
        async with chat.agent():
            for run_id in [*raw.values(), good]:
                await wait_for_async(acknowledged(chat.home, run_id), what=f"run {run_id}")
        rows = journal_rows(chat.home)
        shape = rows[raw["history entries of the wrong shape"]]
        assert shape["error"] == (
            "unusable run payload from the server: payload.chat.history[0] is missing or not "
            "an object (got 'User: hi')"
        )
        huge = rows[raw["a message over 32,000 characters"]]
        assert huge["error"] == (
            "unusable run payload from the server: payload.chat.message is 3,145,728 "
            "characters long; a message may be at most 32,000"
        )
        for run_id in raw.values():
            assert chat.state.run(run_id).status == "failed"
            assert chat.state.run(run_id).error == rows[run_id]["error"]
        assert chat.state.run(good).status == "completed"
        assert len(chat.prompts()) == 1  # only the good turn reached a CLI
        assert chat.prompts()[0].endswith("```text\nStill there?\n```")

    asyncio.run(go())


def test_a_turn_too_large_to_read_is_failed_saying_so_and_the_next_is_served(
    chat: ChatLab,
) -> None:
    """A 10 MB message makes the poll answer bigger than the client reads (4 MiB). The
    server claimed the turn as it answered: the agent reads which run it was from the
    answer's first bytes and fails it with what to do, instead of leaving it claimed until
    the server reaps it; no CLI sees it, and the next turn is served."""
    too_big = chat.state.queue_raw_run(
        WORKER, "chat_message", _raw_chat(message="x" * (10 * 1024 * 1024))
    )

    async def go() -> None:
        async with chat.agent():
            await wait_for_async(acknowledged(chat.home, too_big), what="the huge turn's report")
            good = chat.state.post_message(chat.conversation(), "Still there?")
            await wait_for_async(acknowledged(chat.home, good), what="the next turn")
        failed = chat.state.run(too_big)
        assert failed.status == "failed"
        assert "larger than the 4 MiB device-agent reads" in (failed.error or "")
        assert "make what the run carries smaller" in (failed.error or "")
        assert journal_rows(chat.home)[too_big]["exit_reason"] == "error_message"
        assert chat.state.run(good).status == "completed"
        assert len(chat.prompts()) == 1  # only the good turn reached a CLI

    asyncio.run(go())


def test_a_chat_is_claimed_only_when_its_agent_kind_is_advertised(chat: ChatLab) -> None:
    async def go() -> None:
        elsewhere = chat.state.post_message(chat.conversation(agent_kind="codex"), "hi codex")
        async with chat.agent() as agent:
            assert await agent.agent_kinds.current() == ["claude-code"]
            # Held, not answered with the turn: the server looked and found nothing for us.
            await wait_for_async(lambda: chat.state.held_polls >= 1, what="a held poll")
            here = chat.state.post_message(chat.conversation(), "hi claude")
            await wait_for_async(acknowledged(chat.home, here), what="the claude turn")
        assert chat.state.run(elsewhere).status == "pending"
        assert chat.state.run(elsewhere).claims == 0
        assert chat.state.run(here).status == "completed"
        polls = [r for r in chat.state.requests if r.path == "/api/workers/poll"]
        assert polls  # the body's agent_kinds is what the server filtered on
        assert len(chat.prompts()) == 1

    asyncio.run(go())


def test_status_and_history_show_a_chat_turn_by_the_conversations_first_words(
    chat: ChatLab, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from device_agent.cli.main import main
    from device_agent.cli.status import gather, render

    async def go() -> tuple[str, int]:
        conversation = chat.conversation()
        run_id = chat.state.post_message(
            conversation, "Summarise   the Atlas review\nplease [[hang]]"
        )
        async with chat.agent() as agent:
            await wait_for_async(chat.reports.exists, what="the CLI to start")
            report = await asyncio.to_thread(gather, agent.settings)
            agent.request_stop()
        return render(report), run_id

    shown, run_id = asyncio.run(go())
    assert (
        f"running: run {run_id} — chat: Summarise the Atlas review please [[hang]] (chat_message)"
        in shown
    )
    monkeypatch.setenv("DEVICE_AGENT_HOME", str(chat.home))
    assert main(["history"]) == ExitCode.OK
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith(str(run_id)))
    assert "chat: Summarise the Atlas review please" in line
    assert "claude-code" in line


def test_a_chat_turn_pops_up_no_desktop_notification(
    chat: ChatLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply, or its error, is posted to the conversation the person is in."""
    from device_agent.desktop.notify import NotificationSettings

    shown: list[Any] = []
    monkeypatch.setattr("device_agent.agent.app.find_notifier", lambda settings: shown.append(1))

    async def go() -> None:
        run_id = chat.state.post_message(chat.conversation(), "please [[fail]]")
        async with chat.agent(notifications=NotificationSettings(enabled=True)):
            await wait_for_async(acknowledged(chat.home, run_id), what="the turn")

    asyncio.run(go())
    assert shown == []


def test_the_demo_shows_one_chat_turn_answered_offline(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from device_agent.demo.session import CHAT_MESSAGE, run_demo

    assert run_demo(isolated_home / "demo") == ExitCode.OK
    out = capsys.readouterr().out
    chat = out.split("chat lane:", 1)[1]
    assert f"person: {CHAT_MESSAGE}" in chat
    assert "device: Demo assistant here, answering" in chat
    assert "chat turn 1: completed" in chat


@pytest.mark.slow
def test_a_turn_cut_short_by_a_crash_is_failed_once_and_never_answered_twice(
    chat: ChatLab,
) -> None:
    from device_agent.agent.poll_loop import RESTARTED_TURN_ERROR

    run_id = chat.state.post_message(chat.conversation(), "think forever [[hang]]")
    with DevServer(chat.state).running_in_thread() as server:
        agent = chat.agent_process(server.url)
        try:
            wait_for(chat.reports.exists, what="the CLI to start")
            cli = chat.seen()["pid"]
            agent.send_signal(signal.SIGKILL)  # a crash: nothing is reported on the way out
            agent.communicate(timeout=30)
            assert chat.state.run(run_id).status == "running"
            again = chat.run_once(server.url)
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.communicate()
        assert again.returncode == 0, again.stderr
    run = chat.state.run(run_id)
    assert (run.status, run.error, run.exit_reason) == ("failed", RESTARTED_TURN_ERROR, "crash")
    assert len(chat.prompts()) == 1  # the interrupted turn was not answered again
    wait_for(lambda: not alive(cli), what="the orphaned CLI to be stopped on restart")


def _raw_chat(**changes: Any) -> dict[str, Any]:
    chat: dict[str, Any] = {
        "agent_kind": "claude-code",
        "message": "hello",
        "history": [],
        "agent": {"id": "default", "name": "Assistant"},
    }
    return {"chat": chat | changes, "context": {"user": {"user_id": "usr_dev0001"}}}
