"""The journal driven from the event loop: calls on one thread in order, deferred writes
replayed, and what the journal's upkeep returns logged."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from device_agent.agent.journal import (
    COMPACT_FAILED,
    FINISHED,
    Journal,
    JournalWriteError,
    Upkeep,
)
from device_agent.agent.journal_thread import AsyncJournal, JournalThread
from tests.support.claims import JOURNAL_SERVER, OK, OLD_RUNS_TABLE, journal_claim

S = JOURNAL_SERVER


def test_a_deferred_write_that_can_never_be_replayed_is_dropped_and_the_rest_go_on(
    tmp_path: Path,
) -> None:
    journal = AsyncJournal(Journal(tmp_path / "j.sqlite3"))
    journal_claim(journal.sync, 1)
    journal_claim(journal.sync, 2)

    async def scenario() -> bool:
        # Kept while the disk was full: a result for a row that is gone by the time it is
        # replayed (a user deleted it), then a good one behind it.
        journal._deferred.append(lambda: journal.sync.record_result(S, 99, OK))
        journal._deferred.append(lambda: journal.sync.record_result(S, 2, OK))
        with capture_logs() as logged:
            healthy = await journal.writable_again()
        assert [line["event"] for line in logged] == [
            "a journal write kept while the disk was full cannot be replayed"
        ]
        return healthy

    try:
        assert asyncio.run(scenario()) is True
        assert not journal.deferring
        entry = journal.sync.get(S, 2)
        assert entry is not None
        assert entry.state == FINISHED  # the write behind it was not held back
    finally:
        journal.close()


def test_the_journal_thread_runs_calls_in_order_and_hands_back_results_and_errors() -> None:
    thread = JournalThread()
    done: list[int] = []

    def step(n: int) -> int:
        done.append(n)
        return n * 10

    def broken() -> None:
        raise JournalWriteError("cannot write the journal (disk full)")

    async def scenario() -> None:
        futures = [thread.submit(lambda n=n: step(n)) for n in range(20)]
        assert await asyncio.gather(*futures) == [n * 10 for n in range(20)]
        with pytest.raises(JournalWriteError, match="disk full"):
            await thread.submit(broken)
        abandoned = thread.submit(lambda: step(99))
        abandoned.cancel()  # its caller went away: the call still runs, nothing breaks
        assert await thread.submit(lambda: step(100)) == 1000

    try:
        asyncio.run(scenario())
        assert done == [*range(20), 99, 100]
    finally:
        thread.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(_submit_nothing(thread))


async def _submit_nothing(thread: JournalThread) -> None:
    await thread.submit(lambda: None)


def test_the_compaction_of_an_older_journal_at_start_is_logged(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    old = sqlite3.connect(path)  # made before incremental vacuum: `prune` converts it
    old.execute(OLD_RUNS_TABLE)
    old.commit()
    old.close()
    journal = AsyncJournal(Journal(path))

    async def scenario() -> Upkeep:
        with capture_logs() as logged:
            upkeep = await journal.call(journal.sync.prune)
        compacted = [line for line in logged if line["event"] == "journal compacted"]
        assert upkeep.compacted is not None
        assert [(line["bytes_before"], line["bytes_after"]) for line in compacted] == [
            upkeep.compacted
        ]
        return upkeep

    try:
        asyncio.run(scenario())
    finally:
        journal.close()


def test_upkeep_that_failed_is_logged_as_a_warning_with_its_error(tmp_path: Path) -> None:
    journal = AsyncJournal(Journal(tmp_path / "j.sqlite3"))

    async def scenario() -> None:
        with capture_logs() as logged:
            await journal.call(lambda: Upkeep(failed=COMPACT_FAILED, error="disk I/O error"))
            await journal.call(Upkeep)  # nothing done, nothing said
        assert [(line["event"], line["log_level"], line["error"]) for line in logged] == [
            (COMPACT_FAILED, "warning", "disk I/O error")
        ]
        assert logged[0]["journal"] == str(journal.sync.path)

    try:
        asyncio.run(scenario())
    finally:
        journal.close()
