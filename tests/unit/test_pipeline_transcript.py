"""The pipeline and a run's transcript: kept after every round, each round's JSONL extending
the last byte for byte, uploaded once after the final answer with the run's own token."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import respx

from device_agent.agent.journal import Journal
from device_agent.agent.journal_thread import AsyncJournal
from device_agent.agent.outbox import never_give_up
from device_agent.agent.result import Report
from device_agent.config import Paths, Settings, validate
from device_agent.executors.readers import Usage
from device_agent.executors.request import ExecutionRequest
from device_agent.executors.transcript import Round, Text, ToolResult, ToolUse
from device_agent.server.client import TRANSCRIPT_ROUTE, LobuClient
from device_agent.server.protocol import Claim
from tests.support.pipeline import StaticToken, pipeline_for
from tests.unit.test_pipeline import (
    ORIGIN,
    ROUTE,
    RUN_ID,
    RecordingExecutor,
    ResumingLane,
    SimpleRun,
    resume,
)

SESSION = "owl_ses_" + "s" * 32


class SessionLane(ResumingLane):
    """Its runs carry a session token, as an automation run with an agent_session does."""

    def __init__(self, token: str | None = SESSION) -> None:
        self.token = token

    def parse(self, claim: Claim) -> SimpleRun:
        return SimpleRun(claim.run_id, transcript_token=self.token)


class RoundsExecutor(RecordingExecutor):
    """Each round calls a tool and answers; `on_start` sees the journal file before it runs."""

    def __init__(self, journal_file: Path, on_start: Callable[[str | None], None]) -> None:
        super().__init__()
        self.journal_file = journal_file
        self.seen_at_start = on_start

    async def execute(
        self,
        request: ExecutionRequest,
        *,
        cancel: asyncio.Event,
        on_output: Callable[[str], None] | None = None,
    ) -> Report:
        self.seen_at_start(stored_jsonl(self.journal_file))
        report = await super().execute(request, cancel=cancel, on_output=on_output)
        number = len(self.prompts)
        steps = (
            ToolUse(f"t{number}", "mcp__lobu__run_sdk", {"round": number}),
            ToolResult(f"t{number}", "ok"),
            Text(report.output),
        )
        round_ = Round(
            request.prompt,
            steps,
            Usage(tokens_in=10, tokens_out=2),
            f"ses-{number}",
            "/w",
            1.0,
            2.0,
        )
        return dataclasses.replace(report, transcript=round_)


def stored_jsonl(journal_file: Path) -> str | None:
    db = sqlite3.connect(journal_file)
    try:
        row = db.execute("SELECT jsonl FROM transcripts WHERE run_id = ?", (RUN_ID,)).fetchone()
    finally:
        db.close()
    return row[0] if row else None


def run_with_session(
    tmp_path: Path, answers: list[httpx.Response], lane: SessionLane, uploads: list[httpx.Response]
) -> tuple[list[str | None], list[httpx.Request], list[str]]:
    """One claim through the pipeline; what the journal held at each round's start, the
    upload requests, and the order of every request's path."""
    settings = validate(
        Settings(
            server=ORIGIN,
            worker_id="w1",
            heartbeat_seconds=60,
            paths=Paths.resolve({"DEVICE_AGENT_HOME": str(tmp_path)}),
        )
    )
    journal_file = tmp_path / "journal.sqlite3"
    journal = AsyncJournal(Journal(journal_file))
    at_start: list[str | None] = []
    executor = RoundsExecutor(journal_file, at_start.append)

    async def go() -> tuple[list[httpx.Request], list[str]]:
        with respx.mock(base_url=ORIGIN, assert_all_called=False) as mock:
            mock.post("/api/workers/heartbeat").respond(200, json={"continue": True})
            mock.post(ROUTE).mock(side_effect=answers)
            upload = mock.post(TRANSCRIPT_ROUTE).mock(side_effect=uploads)
            async with LobuClient(ORIGIN, StaticToken().current) as client:
                pipeline = pipeline_for(
                    settings, client, journal, executor, lanes=lambda run_type: lane
                )
                claim = Claim(RUN_ID, "test", None, {"anything": True})
                await pipeline.run(claim, lambda: None, never_give_up)
            paths = [call.request.url.path for call in mock.calls]
            return [call.request for call in upload.calls], paths

    try:
        requests, paths = asyncio.run(go())
        return at_start, requests, paths
    finally:
        journal.close()


DONE = httpx.Response(200, json={"ok": True, "status": "completed"})


def test_each_rounds_transcript_extends_the_last_and_one_upload_follows_the_final_answer(
    tmp_path: Path,
) -> None:
    at_start, requests, paths = run_with_session(
        tmp_path, [resume(1), resume(2), DONE], SessionLane(), [httpx.Response(200, json={"id": 3})]
    )
    assert at_start[0] is None  # nothing before the first round
    one, two = at_start[1], at_start[2]
    assert one is not None
    assert two is not None
    final = stored_jsonl(tmp_path / "journal.sqlite3")
    assert final is not None
    assert two.startswith(one)  # round 2 extends round 1, byte for byte
    assert final.startswith(two)  # and round 3 round 2
    assert final.count('"role":"user"') == 3
    # Once, after the last report, with the run's own token and what the journal kept.
    [request] = requests
    assert [p for p in paths if p != "/api/workers/heartbeat"] == [ROUTE] * 3 + [TRANSCRIPT_ROUTE]
    assert request.headers["authorization"] == f"Bearer {SESSION}"
    body = json.loads(request.content)
    assert body == {"runId": RUN_ID, "terminalStatus": "completed", "snapshotJsonl": final}


def test_a_run_without_a_session_uploads_nothing_and_keeps_its_transcript(tmp_path: Path) -> None:
    _, requests, _ = run_with_session(tmp_path, [DONE], SessionLane(token=None), [])
    assert requests == []
    kept = stored_jsonl(tmp_path / "journal.sqlite3")
    assert kept is not None
    assert kept.count("\n") == 5  # header, prompt, tool call, result, answer


def test_a_final_answer_that_is_not_ok_uploads_nothing(tmp_path: Path) -> None:
    rejected = httpx.Response(404, json={"error": "Run not found"})
    _, requests, _ = run_with_session(tmp_path, [rejected], SessionLane(), [])
    assert requests == []
