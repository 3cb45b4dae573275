"""A run's transcript in the journal: kept with its run, gone with it, and what `history`
shows of it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from device_agent.agent import transcripts
from device_agent.agent.journal import ACKNOWLEDGED, Journal, Retention
from device_agent.agent.result import ExitReason, Report, failure
from device_agent.cli.main import main
from tests.support.clock import FakeClock

SERVER = "http://127.0.0.1:9"
JSONL = (
    '{"type":"session","version":3,"id":"s","timestamp":"2026-12-08T01:25:00.000Z","cwd":"/w"}\n'
    '{"type":"message","id":"acp-1","parentId":null,"timestamp":"2026-12-08T01:25:00.000Z",'
    '"message":{"role":"user","content":[{"type":"text","text":"Summarise the inbox."}]}}\n'
    '{"type":"message","id":"acp-2","parentId":"acp-1","timestamp":"2026-12-08T01:25:01.000Z",'
    '"message":{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":'
    '"mcp__lobu__run_sdk","input":{"method":"automations.completeWindow"}}]}}\n'
    '{"type":"message","id":"acp-3","parentId":"acp-2","timestamp":"2026-12-08T01:25:01.000Z",'
    '"message":{"role":"toolResult","content":[{"type":"tool_result","tool_use_id":"t1",'
    '"is_error":false,"content":[{"type":"text","text":"{\\"ok\\": true}"}]}]}}\n'
    '{"type":"message","id":"acp-4","parentId":"acp-3","timestamp":"2026-12-08T01:25:01.000Z",'
    '"message":{"role":"assistant","content":[{"type":"text","text":"Window completed."}],'
    '"usage":{"inputTokens":300,"outputTokens":60}}}\n'
)


def journal_at(
    home: Path, clock: FakeClock | None = None, retention: Retention | None = None
) -> Journal:
    path = home / "state" / "journal.sqlite3"
    kept = retention or Retention()
    return Journal(path, clock=clock, retention=kept) if clock else Journal(path, retention=kept)


def claimed_run(journal: Journal, run_id: int, *, digest: str = "d") -> None:
    journal.record_claim(
        SERVER,
        run_id,
        run_type="automation",
        watcher_id="7",
        watcher_name="Digest",
        agent_kind="claude-code",
        payload_digest=digest,
    )


def settled_run(journal: Journal, run_id: int) -> None:
    journal.record_result(SERVER, run_id, Report("done", None, 5, 0, None, ExitReason.OK))
    journal.settle(SERVER, run_id, state=ACKNOWLEDGED, answer="completed", message=None)


def test_each_round_rewrites_the_transcript_and_its_upload_is_kept(tmp_path: Path) -> None:
    journal = journal_at(tmp_path)
    claimed_run(journal, 1)
    first_round = JSONL.split("\n", 2)
    transcripts.save(journal, SERVER, 1, "\n".join(first_round[:2]) + "\n", rounds=1)
    transcripts.save(journal, SERVER, 1, JSONL, rounds=2)
    transcripts.note_upload(journal, SERVER, 1, "uploaded (completed, stored as 4)")
    kept = transcripts.kept(journal, SERVER, 1)
    assert kept is not None
    assert (kept.jsonl, kept.rounds, kept.entries) == (JSONL, 2, 4)
    assert kept.uploaded
    transcripts.save(journal, SERVER, 1, JSONL, rounds=2)  # a save keeps the upload's outcome
    assert transcripts.kept_for_run_id(journal, 1)[0].upload == "uploaded (completed, stored as 4)"


def test_a_transcript_goes_when_the_journal_prunes_its_run(tmp_path: Path) -> None:
    clock = FakeClock()
    journal = journal_at(tmp_path, clock, Retention(keep_days=30, keep_rows=1))
    for run_id in (1, 2):
        claimed_run(journal, run_id)
        transcripts.save(journal, SERVER, run_id, JSONL, rounds=1)
        settled_run(journal, run_id)  # a settle applies retention: past keep_rows, run 1 goes
        clock.advance(3600)
    assert transcripts.kept(journal, SERVER, 1) is None
    assert transcripts.kept(journal, SERVER, 2) is not None
    clock.advance(31 * 86400)
    assert journal.prune().pruned == 1  # past keep_days, at start-up
    assert transcripts.kept(journal, SERVER, 2) is None


def test_a_run_numbered_anew_by_a_reset_server_does_not_inherit_a_transcript(
    tmp_path: Path,
) -> None:
    journal = journal_at(tmp_path)
    claimed_run(journal, 1, digest="old run")
    transcripts.save(journal, SERVER, 1, JSONL, rounds=1)
    settled_run(journal, 1)
    assert journal.record_claim(
        SERVER,
        1,
        run_type="automation",
        watcher_id="7",
        watcher_name="Digest",
        agent_kind="claude-code",
        payload_digest="another run",
    )
    assert transcripts.kept(journal, SERVER, 1) is None


def test_a_transcript_whose_run_went_another_way_is_dropped_when_the_journal_opens(
    tmp_path: Path,
) -> None:
    journal = journal_at(tmp_path)
    claimed_run(journal, 1)
    transcripts.save(journal, SERVER, 1, JSONL, rounds=1)
    journal.close()
    # Whatever removes a run without the trigger (a table rebuilt, an older agent's prune).
    db = sqlite3.connect(tmp_path / "state" / "journal.sqlite3")
    db.execute("DROP TRIGGER transcripts_go_with_their_run")
    db.execute("DELETE FROM runs")
    db.commit()
    db.close()
    journal = journal_at(tmp_path)
    assert transcripts.kept_for_run_id(journal, 1) == []


# ------------------------------------------------------------------ history


@pytest.fixture
def with_runs(isolated_home: Path) -> Path:
    journal = journal_at(isolated_home)
    try:
        claimed_run(journal, 1)
        transcripts.save(journal, SERVER, 1, JSONL, rounds=1)
        settled_run(journal, 1)
        transcripts.note_upload(journal, SERVER, 1, "upload failed: HTTP 409: not extending")
        claimed_run(journal, 2)
        journal.record_result(SERVER, 2, failure("no binary"))
    finally:
        journal.close()
    return isolated_home


def test_history_run_says_what_became_of_the_transcript(
    with_runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "--run", "1"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "transcript:" in x)
    assert "1 round, 4 messages" in line
    assert "upload failed: HTTP 409: not extending" in line
    assert "device-agent history --run 1 --transcript" in line
    assert main(["history", "--run", "2"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "transcript:" in x)
    assert line.strip() == "transcript: -"
    assert main(["history", "--run", "1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["transcript"]
    assert shown == {
        "rounds": 1,
        "entries": 4,
        "bytes": len(JSONL.encode()),
        "upload": "upload failed: HTTP 409: not extending",
    }


def test_history_transcript_shows_each_message_and_json_gives_the_jsonl(
    with_runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "--run", "1", "--transcript"]) == 0
    shown = capsys.readouterr().out
    assert "──── round 1" in shown
    assert "user: Summarise the inbox." in shown
    assert 'tool call mcp__lobu__run_sdk: {"method": "automations.completeWindow"}' in shown
    assert 'tool result: {"ok": true}' in shown
    assert "assistant: Window completed." in shown
    assert "(tokens: 300 in, 60 out)" in shown
    assert "upload: upload failed: HTTP 409" in shown
    assert main(["history", "--run", "1", "--transcript", "--json"]) == 0
    assert capsys.readouterr().out == JSONL


def test_history_transcript_says_what_is_missing(
    with_runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "--transcript"]) == 2
    assert "name the run, e.g. --run 42 --transcript" in capsys.readouterr().err
    assert main(["history", "--run", "2", "--transcript"]) == 2
    assert "run 2 has no transcript in the journal" in capsys.readouterr().err
    assert main(["history", "--run", "9", "--transcript"]) == 2
    assert "run 9 is not in the journal" in capsys.readouterr().err
