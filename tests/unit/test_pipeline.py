"""The run pipeline with a lane whose answer asks for another round (the resume loop)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from device_agent.agent.journal import Entry, Journal, JournalState, JournalWriteError
from device_agent.agent.journal_thread import AsyncJournal
from device_agent.agent.outbox import never_give_up
from device_agent.agent.pipeline import MAX_ROUNDS
from device_agent.agent.result import ExitReason, Report
from device_agent.config import Paths, Settings, validate
from device_agent.executors.mcp_proxy import McpProxy
from device_agent.executors.request import ExecutionRequest
from device_agent.lanes import Done, Lane, Resume, Verdict
from device_agent.server.client import Answer, LobuClient
from device_agent.server.protocol import Claim, PayloadError
from tests.support.pipeline import StaticToken, pipeline_for

ORIGIN = "http://127.0.0.1:9"
RUN_ID = 5
ROUTE = f"/api/workers/me/runs/{RUN_ID}/complete-test"


@dataclass(frozen=True)
class SimpleRun:
    run_id: int
    item_id: str = "a1"
    name: str = "resumable"
    agent_kind: str | None = "demo"
    execution_config: Mapping[str, Any] = field(default_factory=dict)
    uses_device_tools: bool = True
    transcript_token: str | None = None

    def prompt(self, nudge: str | None) -> str:
        return "Do the thing" + (f"\n---\nFINALIZE NUDGE: {nudge}" if nudge else "")

    def wire(self, request: ExecutionRequest, *, server: str) -> ExecutionRequest:
        return request

    def review(self, report: Report) -> Report:
        return report


class ResumingLane:
    """A lane shaped like the automation lane: an answer with status "resume" asks for more."""

    run_type = "test"
    may_resume = True

    def parse(self, claim: Claim) -> SimpleRun:
        return SimpleRun(claim.run_id)

    def completion_route(self, run_id: int) -> str:
        return f"/api/workers/me/runs/{run_id}/complete-test"

    def completion_body(
        self, report: Report, *, run_id: int, worker_id: str, attempt: int
    ) -> dict[str, Any]:
        return {
            "worker_id": worker_id,
            "output": report.output,
            "error": report.error,
            "finalize_attempt": attempt,
        }

    def read_completion(self, answer: Answer, *, attempt: int) -> Verdict:
        body = answer.body if isinstance(answer.body, dict) else {}
        if body.get("status") == "resume":
            return Resume(attempt=int(body["attempt"]), nudge=str(body["nudge"]))
        return Done()

    def after_loss(self, report: Report) -> Report | None:
        return report

    def trigger_route(self, item_id: str) -> str:
        return f"/api/workers/me/tests/{item_id}/trigger"


class RecordingExecutor:
    """Stands in for `Executor`: each round's prompt is recorded and succeeds; `on_start`
    sees each request where the CLI would start."""

    def __init__(
        self,
        on_start: Callable[[ExecutionRequest], None] = lambda request: None,
        *,
        mcp: bool = True,
    ):
        self.prompts: list[str] = []
        self.on_start = on_start
        self.mcp = mcp  # whether the profile wires the Lobu tools (an [mcp] table)

    def has_profile(self, agent_kind: str) -> bool:
        return True

    def uses_mcp(self, agent_kind: str) -> bool:
        return self.mcp

    async def execute(
        self,
        request: ExecutionRequest,
        *,
        cancel: asyncio.Event,
        on_output: Callable[[str], None] | None = None,
    ) -> Report:
        self.on_start(request)
        self.prompts.append(request.prompt)
        return Report(f"round {len(self.prompts)}", None, 1, 0, None, ExitReason.OK)


@dataclass
class Outcome:
    answer: Answer | None
    bodies: list[dict[str, Any]]  # every completion posted, in order
    beats: int
    freed: list[int]  # run ids whose slot was freed
    entry: Entry | None  # the journal row afterwards


def run_claim(
    tmp_path: Path,
    answers: list[httpx.Response],
    executor: RecordingExecutor,
    sync_journal: Journal | None = None,
    *,
    lane: Lane | None = None,
    heartbeats: list[httpx.Response] | None = None,
    heartbeat_seconds: float = 60,  # the longest allowed: no second beat in a test
) -> Outcome:
    """One claim through the pipeline with `ResumingLane`, against a server giving `answers`
    to the completions in turn."""
    settings = validate(
        Settings(
            server=ORIGIN,
            worker_id="w1",
            heartbeat_seconds=heartbeat_seconds,
            paths=Paths.resolve({"DEVICE_AGENT_HOME": str(tmp_path)}),
        )
    )
    lane = lane or ResumingLane()
    journal = AsyncJournal(sync_journal or Journal(tmp_path / "journal.sqlite3"))
    freed: list[int] = []

    async def go() -> Outcome:
        with respx.mock(base_url=ORIGIN, assert_all_called=bool(answers)) as mock:
            beats = mock.post("/api/workers/heartbeat")
            if heartbeats is None:
                beats.respond(200, json={"continue": True})
            else:
                beats.mock(side_effect=heartbeats)
            complete = mock.post(ROUTE).mock(side_effect=answers)
            async with LobuClient(ORIGIN, StaticToken().current) as client:
                pipeline = pipeline_for(
                    settings, client, journal, executor, lanes=lambda run_type: lane
                )
                claim = Claim(RUN_ID, "test", None, {"anything": True})
                answer = await pipeline.run(claim, lambda: freed.append(RUN_ID), never_give_up)
            bodies = [json.loads(call.request.content) for call in complete.calls]
            entry = await journal.call(journal.sync.get, ORIGIN, RUN_ID)
            return Outcome(answer, bodies, beats.call_count, freed, entry)

    try:
        return asyncio.run(go())
    finally:
        journal.close()


def resume(attempt: int) -> httpx.Response:
    body = {"ok": True, "status": "resume", "attempt": attempt, "nudge": "call it"}
    return httpx.Response(200, json=body)


def test_a_resume_answer_runs_another_round_on_the_same_claim(tmp_path: Path) -> None:
    executor = RecordingExecutor()
    done = httpx.Response(200, json={"ok": True, "status": "completed"})
    outcome = run_claim(tmp_path, [resume(1), done], executor)
    assert outcome.answer is not None
    assert outcome.answer.ok
    assert outcome.beats == 1  # one lease for both rounds, never a second claim
    assert executor.prompts == ["Do the thing", "Do the thing\n---\nFINALIZE NUDGE: call it"]
    assert [body["finalize_attempt"] for body in outcome.bodies] == [0, 1]
    assert [body["output"] for body in outcome.bodies] == ["round 1", "round 2"]
    assert outcome.freed == [RUN_ID]  # the slot is freed once, after the last round
    assert outcome.entry is not None
    assert (outcome.entry.state, outcome.entry.finalize_attempt) == (JournalState.ACKNOWLEDGED, 1)


def test_a_server_that_always_asks_for_more_gets_a_failure_after_max_rounds(
    tmp_path: Path,
) -> None:
    executor = RecordingExecutor()
    answers = [resume(n) for n in range(1, MAX_ROUNDS + 1)]
    answers.append(httpx.Response(200, json={"ok": True, "status": "failed"}))
    outcome = run_claim(tmp_path, answers, executor)
    assert len(executor.prompts) == MAX_ROUNDS  # the CLI never runs a ninth time
    assert len(outcome.bodies) == MAX_ROUNDS + 1
    assert f"more than {MAX_ROUNDS} rounds" in outcome.bodies[-1]["error"]
    assert all(body["error"] is None for body in outcome.bodies[:-1])
    assert outcome.entry is not None
    assert outcome.entry.state == JournalState.ACKNOWLEDGED


def test_the_claim_is_journaled_before_the_cli_starts_though_the_first_beat_runs_alongside(
    tmp_path: Path,
) -> None:
    states_at_start: list[str | None] = []

    def look_at_the_journal(request: ExecutionRequest) -> None:
        reader = Journal(tmp_path / "journal.sqlite3")
        try:
            entry = reader.get(ORIGIN, request.run_id)
        finally:
            reader.close()
        states_at_start.append(entry.state if entry is not None else None)

    done = httpx.Response(200, json={"ok": True, "status": "completed"})
    outcome = run_claim(tmp_path, [done], RecordingExecutor(look_at_the_journal))
    assert states_at_start == [JournalState.CLAIMED]
    assert outcome.beats == 1  # the first beat was answered, and only once


def test_the_tools_proxy_starts_only_for_a_profile_that_wires_the_tools(tmp_path: Path) -> None:
    wired: list[bool] = []

    def note_mcp(request: ExecutionRequest) -> None:
        wired.append(request.mcp is not None)

    done = httpx.Response(200, json={"ok": True, "status": "completed"})
    run_claim(tmp_path / "with", [done], RecordingExecutor(note_mcp, mcp=True))
    run_claim(tmp_path / "without", [done], RecordingExecutor(note_mcp, mcp=False))
    assert wired == [True, False]


class OwnCredentialLane(ResumingLane):
    """A lane whose runs bring their own Lobu credential (an automation's agent_session)."""

    def parse(self, claim: Claim) -> SimpleRun:
        return SimpleRun(claim.run_id, uses_device_tools=False)


def test_no_tools_proxy_is_started_for_a_run_that_brings_its_own_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[McpProxy] = []
    real_enter = McpProxy.__aenter__

    async def counted(self: McpProxy) -> McpProxy:
        started.append(self)
        return await real_enter(self)

    monkeypatch.setattr(McpProxy, "__aenter__", counted)
    done = httpx.Response(200, json={"ok": True, "status": "completed"})
    wired: list[bool] = []
    executor = RecordingExecutor(lambda request: wired.append(request.mcp is not None))
    run_claim(tmp_path / "own", [done], executor, lane=OwnCredentialLane())
    assert (started, wired) == ([], [False])
    run_claim(tmp_path / "device", [done], executor)  # the same profile, the device's tools
    assert (len(started), wired) == (1, [False, True])


def test_a_run_whose_tools_proxy_cannot_start_is_reported_failed_not_left_claimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_port(self: McpProxy) -> McpProxy:
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(McpProxy, "__aenter__", no_port)
    executor = RecordingExecutor(mcp=True)
    done = httpx.Response(200, json={"ok": True, "status": "failed"})
    outcome = run_claim(tmp_path, [done], executor)
    assert executor.prompts == []  # no CLI started without its tools
    (body,) = outcome.bodies
    assert body["error"] == (
        "device-agent could not run it: OSError: [Errno 98] Address already in use"
    )
    assert outcome.entry is not None
    assert outcome.entry.state == JournalState.ACKNOWLEDGED
    assert outcome.freed == [RUN_ID]


@dataclass(frozen=True)
class RefusedWiringRun(SimpleRun):
    """A run whose own wiring cannot be used, as an automation session's `mcp_url` that
    would send its token unencrypted to another host."""

    def wire(self, request: ExecutionRequest, *, server: str) -> ExecutionRequest:
        raise PayloadError(f"mcp_url refused: not this server ({server})")


class RefusedWiringLane(ResumingLane):
    def parse(self, claim: Claim) -> SimpleRun:
        return RefusedWiringRun(claim.run_id, uses_device_tools=False)


def test_a_run_whose_own_wiring_is_refused_fails_with_that_message_and_no_cli(
    tmp_path: Path,
) -> None:
    executor = RecordingExecutor()
    done = httpx.Response(200, json={"ok": True, "status": "failed"})
    outcome = run_claim(tmp_path, [done], executor, lane=RefusedWiringLane())
    assert executor.prompts == []
    (body,) = outcome.bodies
    assert body["error"] == f"mcp_url refused: not this server ({ORIGIN})"
    assert outcome.entry is not None
    assert outcome.entry.state == JournalState.ACKNOWLEDGED


def test_a_round_leaves_one_run_finished_line_naming_the_run_and_no_claim_line(
    tmp_path: Path,
) -> None:
    done = httpx.Response(200, json={"ok": True, "status": "completed"})
    with capture_logs() as logged:
        run_claim(tmp_path, [done], RecordingExecutor())
    pipeline_lines = [line for line in logged if line["event"] in ("claimed run", "run finished")]
    assert len(pipeline_lines) == 1
    (finished,) = pipeline_lines
    assert finished["event"] == "run finished"
    assert (finished["watcher"], finished["run_type"], finished["agent_kind"]) == (
        "resumable",
        "test",
        "demo",
    )
    assert finished["exit_reason"] is ExitReason.OK


class FullDiskJournal(Journal):
    """A journal that takes the claim, then no write at all (the disk filled up)."""

    full = False

    def _tx(self):  # type: ignore[no-untyped-def]
        if self.full:
            raise JournalWriteError(
                f"cannot write the journal {self.path} (database or disk is full)"
            )
        return super()._tx()


def test_a_round_after_a_resume_the_journal_could_not_record_reports_its_own_attempt(
    tmp_path: Path,
) -> None:
    # The disk fills while round 1 runs: neither its result nor the resume's next round can
    # be journaled. Round 2 must still be reported as round 2, not as a replay of round 1.
    journal = FullDiskJournal(tmp_path / "journal.sqlite3")

    def fill_disk(request: ExecutionRequest) -> None:
        journal.full = True

    executor = RecordingExecutor(fill_disk)
    done = httpx.Response(200, json={"ok": True, "status": "completed"})
    outcome = run_claim(tmp_path, [resume(1), done], executor, journal)
    assert len(executor.prompts) == 2
    assert [body["finalize_attempt"] for body in outcome.bodies] == [0, 1]
    assert [body["output"] for body in outcome.bodies] == ["round 1", "round 2"]


class StoppableLane(ResumingLane):
    """A lane shaped like the watcher lane: a run the server stopped has nothing to report."""

    may_resume = False

    def after_loss(self, report: Report) -> Report | None:
        return None


class UntilCancelledExecutor(RecordingExecutor):
    """A CLI that runs until it is stopped."""

    async def execute(
        self,
        request: ExecutionRequest,
        *,
        cancel: asyncio.Event,
        on_output: Callable[[str], None] | None = None,
    ) -> Report:
        self.on_start(request)
        self.prompts.append(request.prompt)
        await cancel.wait()
        return Report("partial", None, 1, None, "SIGTERM", ExitReason.CANCELLED)


def test_a_run_the_server_stopped_while_the_journal_is_full_is_abandoned_without_an_error(
    tmp_path: Path,
) -> None:
    journal = FullDiskJournal(tmp_path / "journal.sqlite3")

    def fill_disk(request: ExecutionRequest) -> None:
        journal.full = True

    stopped = httpx.Response(409, json={"error": "Run is not in progress"})
    outcome = run_claim(
        tmp_path,
        [],
        UntilCancelledExecutor(fill_disk),
        journal,
        lane=StoppableLane(),
        heartbeats=[httpx.Response(200, json={"continue": True}), stopped],
        heartbeat_seconds=0.01,
    )  # no JournalWriteError out of the run's task
    assert outcome.answer is None
    assert outcome.bodies == []  # the server wants nothing from us
