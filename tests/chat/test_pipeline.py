"""A chat turn through the real pipeline (journal, heartbeat, outbox) with a recording executor:
a 10 MB message fails that turn, reported to complete-chat, and reaches no CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import respx

from device_agent.agent.journal import Journal
from device_agent.agent.journal_thread import AsyncJournal
from device_agent.agent.outbox import never_give_up
from device_agent.config import Paths, Settings, validate
from device_agent.server.client import LobuClient
from device_agent.server.protocol import Claim
from tests.support.pipeline import StaticToken, pipeline_for
from tests.unit.test_pipeline import RecordingExecutor

from .claims import answer

ORIGIN = "http://127.0.0.1:9"


def run_turn(tmp_path: Path, payload: Any) -> tuple[list[dict[str, Any]], RecordingExecutor, Any]:
    settings = validate(
        Settings(
            server=ORIGIN,
            worker_id="w1",
            heartbeat_seconds=60,
            paths=Paths.resolve({"DEVICE_AGENT_HOME": str(tmp_path)}),
        )
    )
    executor = RecordingExecutor()
    journal = AsyncJournal(Journal(tmp_path / "journal.sqlite3"))

    async def go() -> tuple[list[dict[str, Any]], Any]:
        with respx.mock(base_url=ORIGIN) as mock:
            mock.post("/api/workers/heartbeat").respond(200, json={"continue": True})
            complete = mock.post("/api/workers/me/runs/901/complete-chat").respond(
                200, json={"ok": True, "status": "failed"}
            )
            async with LobuClient(ORIGIN, StaticToken().current) as client:
                pipeline = pipeline_for(settings, client, journal, executor)
                claim = Claim(901, "chat_message", "org_1", payload)
                await pipeline.run(claim, lambda: None, never_give_up)
            bodies = [json.loads(call.request.content) for call in complete.calls]
            entry = await journal.call(journal.sync.get, ORIGIN, 901)
            return bodies, entry

    try:
        bodies, entry = asyncio.run(go())
    finally:
        journal.close()
    return bodies, executor, entry


def test_a_ten_megabyte_message_fails_that_turn_without_running_a_cli(tmp_path: Path) -> None:
    payload = answer({"chat.message": "x" * (10 * 1024 * 1024)})["payload"]
    bodies, executor, entry = run_turn(tmp_path, payload)
    assert executor.prompts == []
    assert bodies == [
        {
            "worker_id": "w1",
            "output": "",
            "error": "unusable run payload from the server: payload.chat.message is 10,485,760 "
            "characters long; a message may be at most 32,000",
            "exit_code": None,
            "exit_signal": None,
            "exit_reason": "error_message",
        }
    ]
    assert (entry.state, entry.run_type, entry.watcher_name) == (
        "acknowledged",
        "chat_message",
        None,
    )


def test_a_good_turn_gets_the_chat_prompt_and_its_reply_is_reported(tmp_path: Path) -> None:
    bodies, executor, entry = run_turn(tmp_path, answer()["payload"])
    assert len(executor.prompts) == 1
    assert executor.prompts[0].startswith("You are executing one chat turn for the Lobu agent")
    assert bodies[0]["output"] == "round 1"  # what the recording executor answers
    assert bodies[0]["error"] is None
    assert (entry.watcher_id, entry.watcher_name, entry.agent_kind) == (
        "conv-1",
        "chat: Remember project Atlas.",
        "claude-code",
    )
