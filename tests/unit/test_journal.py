from __future__ import annotations

import dataclasses
import sqlite3
import stat
from pathlib import Path

import pytest

from device_agent.agent import transcripts
from device_agent.agent.journal import (
    ABANDONED,
    ACKNOWLEDGED,
    CLAIMED,
    DEAD,
    FINISHED,
    PRUNE_AT_BYTES,
    PRUNE_EVERY_MAX,
    HeldPoll,
    Journal,
    Retention,
    disk_bytes,
    head_and_tail,
)
from device_agent.agent.result import ExitReason, Report
from tests.support.claims import JOURNAL_SERVER, OK, OLD_RUNS_TABLE, journal_claim

S = JOURNAL_SERVER


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_claim_is_recorded_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    assert journal_claim(journal, 1) is True
    assert journal_claim(journal, 1) is False
    entry = journal.get(S, 1)
    assert entry is not None
    assert entry.state == CLAIMED


def test_result_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    journal_claim(journal, 1)
    report = dataclasses.replace(OK, details={"cost_usd": 0.1})
    written = journal.record_result(S, 1, report)
    journal.close()
    reopened = Journal(path)
    entry = reopened.get(S, 1)
    assert entry is not None
    assert (entry.state, entry.output, entry.details) == (FINISHED, "out", {"cost_usd": 0.1})
    assert entry.report() == report
    assert written == entry  # record_result returns the row it wrote


def test_next_round_claims_the_run_again_with_its_attempt(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    journal_claim(journal, 1)
    journal.record_result(S, 1, OK)
    journal.next_round(S, 1, 2)
    entry = journal.get(S, 1)
    assert entry is not None
    assert (entry.state, entry.finalize_attempt) == (CLAIMED, 2)


def test_a_journal_from_before_finalize_attempt_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    old = sqlite3.connect(path)
    old.execute(OLD_RUNS_TABLE)
    old.close()
    journal = Journal(path)
    journal_claim(journal, 1)
    entry = journal.get(S, 1)
    assert entry is not None
    assert entry.finalize_attempt == 0


def test_journal_file_is_private(tmp_path: Path) -> None:
    Journal(tmp_path / "j.sqlite3")
    assert stat.S_IMODE((tmp_path / "j.sqlite3").stat().st_mode) == 0o600


def test_output_is_capped(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3", output_cap=10)
    journal_claim(journal, 1)
    journal.record_result(S, 1, Report("x" * 100, None, 1, 0, None, ExitReason.OK))
    entry = journal.get(S, 1)
    assert entry is not None
    assert entry.output == "x" * 10 + "\n[output truncated]"


def test_an_output_the_executor_already_cut_at_the_cap_is_kept_whole(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3", output_cap=10)
    journal_claim(journal, 1)
    cut = "x" * 10 + "\n[output truncated]"
    journal.record_result(S, 1, Report(cut, None, 1, 0, None, ExitReason.OK))
    entry = journal.get(S, 1)
    assert entry is not None
    assert entry.output == cut


def test_record_result_returns_the_row_without_reading_the_output_back(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    journal_claim(journal, 1)
    output = "y" * 1000
    entry = journal.record_result(S, 1, dataclasses.replace(OK, output=output))
    assert entry.output is output  # the caller's string, not a second copy from the database
    assert entry.state == FINISHED
    assert entry.watcher_name == "w"
    assert entry == journal.get(S, 1)  # the same row as a full read


def test_record_result_returns_the_output_as_stored_so_it_is_what_gets_delivered(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    journal_claim(journal, 1)
    entry = journal.record_result(S, 1, dataclasses.replace(OK, output="a\udc80b"))
    assert entry.output == "a\ufffdb"  # a lone surrogate cannot be UTF-8: replaced, as stored
    assert entry == journal.get(S, 1)


def test_settle_rejects_unknown_states(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    with pytest.raises(ValueError, match="not a settled state"):
        journal.settle(S, 1, state=FINISHED, answer="x", message=None)


def test_prune_never_drops_pending_or_dead_rows(tmp_path: Path) -> None:
    clock = FakeClock()
    journal = Journal(tmp_path / "j.sqlite3", clock=clock, retention=Retention(keep_days=30))
    for run_id, state in enumerate([ACKNOWLEDGED, ABANDONED, DEAD, FINISHED, CLAIMED], start=1):
        journal_claim(journal, run_id)
        if state != CLAIMED:
            journal.record_result(S, run_id, OK)
        if state in (ACKNOWLEDGED, ABANDONED, DEAD):
            journal.settle(S, run_id, state=state, answer="a", message=None)
    clock.now += 40 * 86400
    assert journal.prune().pruned == 2
    assert {e.state for e in journal.recent(10)} == {DEAD, FINISHED, CLAIMED}


def test_retention_by_count_is_applied_every_prune_every_settled_runs(tmp_path: Path) -> None:
    clock = FakeClock()
    retention = Retention(keep_rows=2, prune_every=3)
    journal = Journal(tmp_path / "j.sqlite3", clock=clock, retention=retention)
    kept = []
    for run_id in range(1, 10):
        clock.now += 1
        journal_claim(journal, run_id)
        journal.record_result(S, run_id, OK)
        journal.settle(S, run_id, state=ACKNOWLEDGED, answer="completed", message=None)
        kept.append(journal.counts()[ACKNOWLEDGED])  # while running, not at start
    # Pruned at every third settled run: never more than keep_rows + prune_every - 1 rows.
    assert kept == [1, 2, 2, 3, 4, 2, 3, 4, 2]
    assert [e.run_id for e in journal.recent(10)] == [9, 8]
    assert journal.prune().pruned == 0


def test_retention_by_count_is_applied_at_each_settled_run_when_keep_rows_is_small(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    journal = Journal(tmp_path / "j.sqlite3", clock=clock, retention=Retention(keep_rows=2))
    for run_id in range(1, 6):
        clock.now += 1
        journal_claim(journal, run_id)
        journal.record_result(S, run_id, OK)
        journal.settle(S, run_id, state=ACKNOWLEDGED, answer="completed", message=None)
        assert journal.counts()[ACKNOWLEDGED] == min(run_id, 2)
    assert [e.run_id for e in journal.recent(10)] == [5, 4]


@pytest.mark.parametrize(
    ("retention", "every"),
    [
        (Retention(keep_rows=1000), 50),  # a twentieth of keep_rows: at most 5 % more kept
        (Retention(keep_rows=100_000), PRUNE_EVERY_MAX),
        (Retention(keep_rows=2), 1),
        (Retention(keep_rows=0), 1),
        (Retention(keep_rows=1000, prune_every=7), 7),
        (Retention(keep_rows=1000, prune_every=0), 1),
    ],
)
def test_prune_every_follows_keep_rows_unless_set(retention: Retention, every: int) -> None:
    assert retention.every == every


def test_retention_runs_before_its_count_once_the_file_grew_by_prune_at_bytes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite3"
    roomy = Retention(keep_rows=1, keep_output_bytes=8 << 20, prune_every=1000)
    journal = Journal(path, retention=roomy, reclaim_at=1 << 20)
    journal.prune()
    kept = []
    for run_id in range(1, 9):  # 3 MiB each: the file grows by PRUNE_AT_BYTES every 2 runs
        journal_claim(journal, run_id)
        journal.record_result(S, run_id, dataclasses.replace(OK, output="w" * (3 << 20)))
        journal.settle(S, run_id, state=ACKNOWLEDGED, answer="completed", message=None)
        kept.append(journal.counts()[ACKNOWLEDGED])
    assert max(kept) <= 2, kept  # far fewer than prune_every settled runs apart
    assert disk_bytes(path) < 3 * PRUNE_AT_BYTES


def test_retention_by_age_is_applied_as_runs_settle(tmp_path: Path) -> None:
    clock = FakeClock()
    retention = Retention(keep_days=1, prune_every=1)
    journal = Journal(tmp_path / "j.sqlite3", clock=clock, retention=retention)
    for run_id in (1, 2):
        journal_claim(journal, run_id)
        journal.record_result(S, run_id, OK)
        journal.settle(S, run_id, state=ABANDONED, answer="stopped by server", message=None)
        clock.now += 2 * 86400  # the next run settles two days later
    journal_claim(journal, 3)
    journal.record_result(S, 3, OK)
    assert [e.run_id for e in journal.recent(10)] == [3, 2]  # run 1 went when 2 settled
    journal.settle(S, 3, state=ACKNOWLEDGED, answer="completed", message=None)
    assert [e.run_id for e in journal.recent(10)] == [3]


def test_a_settled_output_keeps_its_head_and_tail_within_the_budget(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3", retention=Retention(keep_output_bytes=4096))
    output = "HEAD" + "é" * 50_000 + "x" * 50_000 + "TAIL"
    for run_id, state in ((1, ACKNOWLEDGED), (2, DEAD), (3, FINISHED)):
        journal_claim(journal, run_id)
        journal.record_result(S, run_id, dataclasses.replace(OK, output=output))
        if state != FINISHED:
            journal.settle(S, run_id, state=state, answer="a", message=None)
    settled = journal.get(S, 1)
    assert settled is not None
    assert settled.output is not None
    assert len(settled.output.encode()) <= 4096
    assert settled.output_bytes == len(settled.output.encode())
    assert settled.output.startswith("HEADéé")
    assert settled.output.endswith("xxTAIL")
    assert f"of {len(output.encode())} bytes cut here" in settled.output
    for kept_whole in (2, 3):  # refused by the server, or still to be sent: all of it
        entry = journal.get(S, kept_whole)
        assert entry is not None
        assert entry.output == output


@pytest.mark.parametrize("limit", [1, 200, 300, 1024, 4097])
@pytest.mark.parametrize("text", ["a" * 10_000, "€" * 10_000, "a€😀" * 3000])
def test_head_and_tail_is_never_over_the_limit_and_cuts_whole_characters(
    limit: int, text: str
) -> None:
    size = len(text.encode())
    kept = head_and_tail(text, size, limit)
    assert len(kept.encode()) <= limit
    assert kept.encode().decode() == kept  # whole characters only
    if limit >= 1024:
        assert kept[:3] == text[:3]
        assert kept[-3:] == text[-3:]


def test_the_file_shrinks_after_a_prune(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    roomy = Retention(keep_output_bytes=8 << 20)  # nothing cut: only pruning frees space
    journal = Journal(path, retention=roomy)
    for run_id in range(1, 7):
        journal_claim(journal, run_id)
        journal.record_result(S, run_id, dataclasses.replace(OK, output="z" * (3 << 20)))
        journal.settle(S, run_id, state=ACKNOWLEDGED, answer="completed", message=None)
    journal.close()
    assert disk_bytes(path) > 18 << 20
    journal = Journal(path, retention=dataclasses.replace(roomy, keep_rows=1))
    assert journal.prune().pruned == 5
    assert disk_bytes(path) < 4 << 20
    entry = journal.get(S, 6)
    assert entry is not None
    assert entry.output == "z" * (3 << 20)


def test_the_file_stays_small_while_large_outputs_settle(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    journal = Journal(path, retention=Retention(keep_rows=3), reclaim_at=1 << 20)
    sizes = []
    for run_id in range(1, 13):  # 12 outputs of 3 MiB: 36 MiB if kept
        journal_claim(journal, run_id)
        journal.record_result(S, run_id, dataclasses.replace(OK, output="y" * (3 << 20)))
        journal.settle(S, run_id, state=ACKNOWLEDGED, answer="completed", message=None)
        sizes.append(disk_bytes(path))
    assert max(sizes) < 1 << 20, sizes  # the WAL is emptied and the freed pages given back
    assert journal.counts() == {ACKNOWLEDGED: 3}


def test_an_older_journal_is_converted_to_give_space_back_and_shrinks(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    old = sqlite3.connect(path)
    old.execute("PRAGMA journal_mode=WAL")
    old.execute(OLD_RUNS_TABLE)
    for run_id in range(1, 10):
        old.execute(
            "INSERT INTO runs (server, run_id, run_type, state, claimed_at, output)"
            " VALUES (?, ?, 'watcher', ?, ?, ?)",
            (S, run_id, "finished" if run_id == 9 else "acknowledged", run_id, "o" * (2 << 20)),
        )
    old.commit()
    old.close()
    assert disk_bytes(path) > 16 << 20
    journal = Journal(path, retention=Retention(keep_days=36500, keep_rows=4))
    upkeep = journal.prune()
    assert upkeep.pruned == 4
    assert upkeep.compacted is not None  # what the agent logs
    before, after = upkeep.compacted
    assert before > 16 << 20
    assert after == disk_bytes(path)
    assert upkeep.failed is None
    assert journal._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    assert disk_bytes(path) < 3 << 20  # four settled rows left, each output cut to 32 KiB
    pending = journal.get(S, 9)
    assert pending is not None
    assert pending.output == "o" * (2 << 20)  # still to be delivered: kept whole
    assert pending.output_bytes == 2 << 20
    entry = journal.get(S, 8)
    assert entry is not None
    assert entry.output is not None
    assert entry.output_bytes == len(entry.output.encode()) <= 32 * 1024
    moved = journal._db.execute("SELECT COUNT(*) FROM runs WHERE output IS NOT NULL")
    assert moved.fetchone()[0] == 0  # the outputs are kept apart from their runs now


def test_queries_that_list_runs_read_no_output(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    for run_id in range(1, 4):
        journal_claim(journal, run_id)
        journal.record_result(S, run_id, dataclasses.replace(OK, output="big" * 100_000))
    journal.settle(S, 1, state=ACKNOWLEDGED, answer="completed", message=None)
    reads = output_reads(journal)
    listed = journal.recent(10)
    journal.in_state(FINISHED, CLAIMED, server=S)
    journal.latest_run_type(S, ("watcher",))
    journal.counts()
    journal.unanswered_poll()
    assert reads == []
    assert [e.output for e in listed] == [None, None, None]
    assert [(e.run_id, e.output_bytes) for e in listed] == [
        (3, 300_000),
        (2, 300_000),
        (1, 32 * 1024),  # settled: its head and tail
    ]
    entry = journal.get(S, 2)
    assert entry is not None
    assert entry.output == "big" * 100_000
    assert sorted(reads) == ["outputs.output", "runs.output"]  # one run's, when asked for


def output_reads(journal: Journal) -> list[str]:
    """Every statement prepared from now on that reads `runs.output`, by column name."""
    reads: list[str] = []

    def authorize(action: int, table: str | None, column: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_READ and column == "output":
            reads.append(f"{table}.{column}")
        return sqlite3.SQLITE_OK

    journal._db.set_authorizer(authorize)
    return reads


def test_a_held_poll_with_no_end_and_no_claim_since_is_found_by_the_next_start(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    path = tmp_path / "j.sqlite3"
    journal = Journal(path, clock=clock)
    assert journal.unanswered_poll() is None
    journal.poll_held(S)
    journal.close()  # killed while the poll was out
    journal = Journal(path, clock=clock)
    assert journal.unanswered_poll() == HeldPoll(S, clock.now)

    journal.poll_held(S)
    journal.poll_ended()  # answered with nothing to do
    assert journal.unanswered_poll() is None

    clock.now += 1
    journal.poll_held(S)
    journal_claim(journal, 7)  # answered with a run: its claim is the poll's end
    assert journal.unanswered_poll() is None


def test_rows_are_kept_per_server(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    journal_claim(journal, 1)
    journal.record_claim(
        "https://other",
        1,
        run_type="watcher",
        watcher_id=None,
        watcher_name=None,
        agent_kind=None,
        payload_digest="d",
    )
    assert len(journal.in_state(CLAIMED, server=S)) == 1
    assert journal.counts() == {CLAIMED: 2}


def test_a_reused_run_id_with_another_payload_replaces_a_settled_row(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    journal_claim(journal, 1)
    journal.settle(S, 1, state=ACKNOWLEDGED, answer="completed", message=None)
    same = journal.record_claim(
        S,
        1,
        run_type="watcher",
        watcher_id="1",
        watcher_name="w",
        agent_kind="demo",
        payload_digest="d",
    )
    assert same is False  # the same run handed over again: never executed twice
    new = journal.record_claim(
        S,
        1,
        run_type="watcher",
        watcher_id="9",
        watcher_name="new",
        agent_kind="demo",
        payload_digest="other",
    )
    assert new is True  # the server's database was reset and numbers runs anew
    entry = journal.get(S, 1)
    assert entry is not None
    assert (entry.state, entry.watcher_name) == (CLAIMED, "new")


def test_a_pending_row_is_never_replaced(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    journal_claim(journal, 1)
    journal.record_result(S, 1, OK)
    assert not journal.record_claim(
        S,
        1,
        run_type="watcher",
        watcher_id="9",
        watcher_name="new",
        agent_kind="demo",
        payload_digest="other",
    )
    entry = journal.get(S, 1)
    assert entry is not None
    assert entry.output == "out"


def test_of_a_runs_writes_only_the_claim_and_the_result_wait_for_the_disk(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    statements: list[str] = []
    journal._db.set_trace_callback(statements.append)
    journal.poll_held(S)
    journal_claim(journal, 1)
    journal.usage.start_round(S, 1, 1, day="2026-01-01", started_at=1.0, agent_kind="demo")
    journal.usage.finish_round(S, 1, 1, cost_usd=0.5, tokens_in=1, tokens_out=2)
    transcripts.save(journal, S, 1, "{}\n", rounds=1)
    journal.record_result(S, 1, OK)
    journal.settle(S, 1, state=ACKNOWLEDGED, answer="200", message=None)
    transcripts.note_upload(journal, S, 1, "uploaded")
    journal._db.set_trace_callback(None)
    # Each COMMIT with the synchronous mode it ran under and the table its transaction wrote.
    commits, mode, table = [], "FULL", ""
    for statement in statements:
        if statement.startswith("PRAGMA synchronous="):
            mode = statement.removeprefix("PRAGMA synchronous=")
        elif statement.startswith(("INSERT", "UPDATE")) and not table:
            words = statement.replace(" OR REPLACE", "").replace(" OR IGNORE", "").split()
            table = words[1] if words[0] == "UPDATE" else words[2]
        elif statement == "COMMIT":
            commits.append((table, mode))
            table = ""
    # Under FULL, a COMMIT syncs the WAL and with it every commit before it.
    assert commits == [
        ("held_poll", "NORMAL"),
        ("runs", "FULL"),  # the claim: on disk before the CLI starts
        ("usage", "NORMAL"),
        ("usage", "NORMAL"),
        ("transcripts", "NORMAL"),
        ("runs", "FULL"),  # the result: on disk before it is sent
        ("runs", "NORMAL"),  # settled: if lost, the next start sends the result again
        ("transcripts", "NORMAL"),
    ]
    assert journal.usage.day_totals("2026-01-01").cost_usd == 0.5
