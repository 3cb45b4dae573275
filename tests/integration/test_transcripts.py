"""A run's transcript end to end: the agent in-process against the dev server, with a fake
Claude Code printing its real stream-json events (tests/fakes/claude_automation.py).

The dev server takes a transcript only with the `agent_session` token of the very run it
names (a device token gets 400, another run's token 403): an upload it stored was sent
with the run's session token."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from device_agent.agent import transcripts
from device_agent.agent.journal import Journal
from device_agent.cli.main import main
from device_agent.devserver import DevState, Fault
from device_agent.devserver.routes_transcript import TRANSCRIPT_ROUTE
from tests.support.agent import install_fake, journal_rows
from tests.support.lanelab import AUTOMATION_WORKER as WORKER
from tests.support.lanelab import AutoLab, settled
from tests.support.processes import alive
from tests.support.waiting import wait_for_async


def kept(home: Path, run_id: int) -> transcripts.Kept | None:
    journal = Journal(home / "state" / "journal.sqlite3")
    try:
        found = transcripts.kept_for_run_id(journal, run_id)
    finally:
        journal.close()
    return found[0] if found else None


def upload_noted(home: Path, run_id: int) -> bool:
    found = kept(home, run_id)
    return found is not None and found.upload is not None


def entries(jsonl: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in jsonl.splitlines()]


def messages(jsonl: str) -> list[tuple[str, str]]:
    return [
        (entry["message"]["role"], entry["message"]["content"][0]["type"])
        for entry in entries(jsonl)[1:]
    ]


def uploads(state: DevState) -> list[int]:
    """The transcript requests, as the statuses the server answered them with."""
    return [r.status for r in state.requests if r.path == TRANSCRIPT_ROUTE]


def run_to_the_end(auto: AutoLab, automation: str, **agent: Any) -> int:
    async def go() -> int:
        run_id = auto.state.queue_automation_run(automation)
        async with auto.agent(**agent):
            await wait_for_async(settled(auto.state, run_id), what="the run to settle")
            await wait_for_async(lambda: upload_noted(auto.home, run_id), what="the upload")
        return run_id

    return asyncio.run(go())


def test_a_completed_run_uploads_its_transcript_once_after_its_final_report(
    auto: AutoLab,
) -> None:
    run_id = run_to_the_end(auto, auto.automation("Summarise the inbox"))
    run = auto.state.run(run_id)
    assert run.status == "completed"
    paths = [r.path for r in auto.state.requests]
    last_report = max(i for i, p in enumerate(paths) if p.endswith("/complete-automation"))
    assert [i for i, p in enumerate(paths) if p == TRANSCRIPT_ROUTE] == [last_report + 1]
    stored = auto.state.transcript(run_id)
    assert stored is not None
    assert stored.terminal_status == "completed"
    assert messages(stored.snapshot_jsonl) == [
        ("user", "text"),
        ("assistant", "tool_use"),
        ("toolResult", "tool_result"),
        ("assistant", "text"),
    ]
    written = entries(stored.snapshot_jsonl)
    assert written[0]["type"] == "session"
    assert written[0]["id"] == "5e55f00d-0000-4000-8000-00000000a070"  # the CLI's session
    assert "Summarise the inbox" in written[1]["message"]["content"][0]["text"]
    assert written[2]["message"]["content"][0]["name"] == "mcp__lobu__run_sdk"
    # the round's usage, from the `result` event: input 900 + cache reads 4000, output 120
    assert written[4]["message"]["usage"] == {"inputTokens": 4900, "outputTokens": 120}
    on_device = kept(auto.home, run_id)
    assert on_device is not None
    assert on_device.jsonl == stored.snapshot_jsonl  # the journal keeps what was sent
    assert on_device.upload == f"uploaded (completed, stored as {stored.id})"


def test_a_resumed_run_uploads_once_after_its_last_round_with_both_rounds(
    auto: AutoLab,
) -> None:
    run_id = run_to_the_end(auto, auto.automation("Summarise [[forget]]", max_attempts=2))
    assert auto.state.run(run_id).status == "completed"
    assert uploads(auto.state) == [200]  # none after the "resume" answer to round 1
    paths = [r.path for r in auto.state.requests]
    reports = [i for i, p in enumerate(paths) if p.endswith("/complete-automation")]
    assert len(reports) == 2
    assert paths.index(TRANSCRIPT_ROUTE) > reports[-1]
    stored = auto.state.transcript(run_id)
    assert stored is not None
    prompts = [
        e["message"]["content"][0]["text"]
        for e in entries(stored.snapshot_jsonl)[1:]
        if e["message"]["role"] == "user"
    ]
    assert len(prompts) == 2
    assert "FINALIZE NUDGE" not in prompts[0]
    assert "FINALIZE NUDGE" in prompts[1]  # the prompt as sent, nudge included
    assert [e["id"] for e in entries(stored.snapshot_jsonl)[1:]] == [
        f"acp-{n}" for n in range(1, len(entries(stored.snapshot_jsonl)))
    ]


def test_a_run_that_fails_uploads_failed(auto: AutoLab) -> None:
    run_id = run_to_the_end(auto, auto.automation("[[never]]", max_attempts=0))
    assert auto.state.run(run_id).status == "failed"
    stored = auto.state.transcript(run_id)
    assert stored is not None
    assert stored.terminal_status == "failed"


def test_a_run_that_times_out_uploads_timeout(auto: AutoLab) -> None:
    automation = auto.automation("[[hang]]", execution_config={"timeout_seconds": 1})
    run_id = run_to_the_end(auto, automation)
    assert auto.state.run(run_id).exit_reason == "timeout"
    stored = auto.state.transcript(run_id)
    assert stored is not None
    assert stored.terminal_status == "timeout"


def test_a_run_the_server_cancelled_uploads_cancelled(auto: AutoLab) -> None:
    async def go() -> int:
        run_id = auto.state.queue_automation_run(auto.automation("[[hang]]"))
        async with auto.agent():
            await wait_for_async(lambda: Path(f"{auto.reports}.1").exists(), what="the CLI")
            pid = auto.seen()["pid"]
            auto.state.cancel_run(run_id)
            await wait_for_async(lambda: not alive(pid), what="the CLI to be stopped")
            await wait_for_async(lambda: upload_noted(auto.home, run_id), what="the upload")
        return run_id

    run_id = asyncio.run(go())
    stored = auto.state.transcript(run_id)
    assert stored is not None
    assert stored.terminal_status == "cancelled"


def test_a_run_cut_short_by_a_shutdown_uploads_cancelled(auto: AutoLab) -> None:
    async def go() -> int:
        run_id = auto.state.queue_automation_run(auto.automation("[[hang]]"))
        async with auto.agent():
            await wait_for_async(lambda: Path(f"{auto.reports}.1").exists(), what="the CLI")
        return run_id  # the agent stopped: its drain waited for the upload

    run_id = asyncio.run(go())
    assert auto.state.run(run_id).status == "cancelled"
    stored = auto.state.transcript(run_id)
    assert stored is not None
    assert stored.terminal_status == "cancelled"


def test_no_token_and_no_secret_the_cli_printed_is_in_the_transcript(auto: AutoLab) -> None:
    run_id = run_to_the_end(auto, auto.automation("Summarise [[secret]]"))
    session = auto.state.run(run_id).session_token
    assert session is not None
    stored = auto.state.transcript(run_id)
    assert stored is not None
    assert "I was given Bearer [REDACTED]" in stored.snapshot_jsonl  # the CLI echoed it
    for secret in (session, auto.token):
        assert secret not in stored.snapshot_jsonl
    on_device = kept(auto.home, run_id)
    assert on_device is not None
    assert session not in on_device.jsonl


def test_a_tool_result_over_64_kib_is_cut_in_what_is_uploaded(auto: AutoLab) -> None:
    run_id = run_to_the_end(auto, auto.automation("Summarise [[big=100000]]"))
    stored = auto.state.transcript(run_id)
    assert stored is not None
    [result] = [
        e["message"]["content"][0]["content"][0]["text"]
        for e in entries(stored.snapshot_jsonl)[1:]
        if e["message"]["role"] == "toolResult"
    ]
    assert result == "x" * 65_536 + "…[truncated]"


def diverging_snapshot(auto: AutoLab, run_id: int) -> None:
    auto.state.store_transcript(run_id, "completed", '{"type":"session","id":"elsewhere"}\n')


@pytest.mark.parametrize(
    ("arrange", "status"),
    [
        (lambda auto, run_id: auto.state.faults.add(Fault(route="transcript", status=401)), 401),
        (diverging_snapshot, 409),
        (lambda auto, run_id: auto.state.faults.add(Fault(route="transcript", status=413)), 413),
    ],
    ids=["401", "409", "413"],
)
def test_a_refused_upload_leaves_the_runs_outcome_as_it_was(
    auto: AutoLab, arrange: Any, status: int
) -> None:
    async def go() -> int:
        run_id = auto.state.queue_automation_run(auto.automation("Summarise the inbox"))
        arrange(auto, run_id)
        async with auto.agent():
            await wait_for_async(settled(auto.state, run_id), what="the run to settle")
            await wait_for_async(lambda: upload_noted(auto.home, run_id), what="the upload")
        return run_id

    with capture_logs() as logged:
        run_id = asyncio.run(go())
    assert auto.state.run(run_id).status == "completed"
    row = journal_rows(auto.home)[run_id]
    assert (row["state"], row["answer"], row["error"]) == ("acknowledged", "completed", None)
    assert uploads(auto.state) == [status]  # said no: not tried again
    on_device = kept(auto.home, run_id)
    assert on_device is not None
    assert on_device.upload is not None
    assert on_device.upload.startswith(f"upload failed: HTTP {status}")
    warned = [line for line in logged if line["event"].startswith("transcript not uploaded")]
    assert [line["answer"][:8] for line in warned] == [f"HTTP {status}"]
    assert warned[0]["see"] == f"device-agent history --run {run_id} --transcript"


def test_an_upload_the_server_could_not_take_is_tried_3_times_250_ms_apart(
    auto: AutoLab,
) -> None:
    auto.state.faults.add(Fault(route="transcript", status=503, times=2))
    run_id = run_to_the_end(auto, auto.automation("Summarise the inbox"))
    assert uploads(auto.state) == [503, 503, 200]
    assert auto.state.transcript(run_id) is not None


def test_a_run_without_an_agent_session_keeps_its_transcript_on_the_device(
    auto: AutoLab,
) -> None:
    async def go() -> int:
        run_id = auto.state.queue_automation_run(auto.automation("Reply", agent_id=None))
        async with auto.agent():
            await wait_for_async(settled(auto.state, run_id), what="the run to settle")
            await wait_for_async(lambda: kept(auto.home, run_id) is not None, what="the journal")
        return run_id

    run_id = asyncio.run(go())
    assert uploads(auto.state) == []
    on_device = kept(auto.home, run_id)
    assert on_device is not None
    assert on_device.upload is None


def test_a_watcher_run_keeps_its_transcript_and_history_shows_it(
    tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    bin_dir = tmp_path / "bin"
    install_fake(bin_dir, "claude")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    state = DevState(create_checkin_watcher=False, next_poll_seconds=0.2)
    lab = AutoLab(state, state.add_token(), isolated_home, tmp_path / "seen", tmp_path, WORKER)

    async def go() -> int:
        watcher = state.add_watcher(
            "Check my inbox.", name="Inbox", agent_kind="claude-code", pinned_worker_id=WORKER
        )
        run_id = state.queue_run(watcher)
        async with lab.agent():
            await wait_for_async(
                lambda: journal_rows(isolated_home).get(run_id, {}).get("state") == "acknowledged",
                what="the run to be delivered",
            )
        return run_id

    run_id = asyncio.run(go())
    assert uploads(state) == []
    assert main(["history", "--run", str(run_id), "--transcript"]) == 0
    shown = capsys.readouterr().out
    assert "user: Check my inbox." in shown
    assert 'tool call Read: {"file_path": "notes.md"}' in shown
    assert "assistant: Summary: Check my inbox." in shown
    assert "upload: none (kept on this device only)" in shown
