"""The outbox: each server answer to a result report, and what the journal says afterwards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from device_agent.agent.journal import Journal, JournalState, JournalWriteError
from device_agent.agent.journal_thread import AsyncJournal
from device_agent.agent.outbox import FINAL_409_NOTE, GiveUp, Outbox, after, never_give_up
from device_agent.agent.result import ExitReason, Report
from device_agent.server.client import AnswerKind, LobuClient

ORIGIN = "http://127.0.0.1:9"
WORKER = "w1"
RUN_ID = 7
ROUTE = f"/api/workers/me/runs/{RUN_ID}/complete-watcher"
SUCCESS = Report("all good", None, 12, 0, None, ExitReason.OK)
FAILED = Report("", "it broke", 12, 1, None, ExitReason.ERROR_MESSAGE)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    """The journal the outbox works on; its own `AsyncJournal` closes it after a flush."""
    return Journal(tmp_path / "journal.sqlite3")


def finished(journal: Journal, report: Report = SUCCESS) -> None:
    journal.record_claim(
        ORIGIN,
        RUN_ID,
        run_type="watcher",
        watcher_id="1",
        watcher_name="digest",
        agent_kind="demo",
        payload_digest="d",
    )
    journal.record_result(ORIGIN, RUN_ID, report)


def deliver(
    journal: Journal,
    answers: list[httpx.Response],
    *,
    give_up: GiveUp = never_give_up,
    budget: int = 8,
    refused: Callable[[int], None] | None = None,
) -> tuple[AnswerKind, list[dict[str, Any]]]:
    """Flush the outbox against a server giving `answers` in turn; the kind of the last
    answer and every body that was posted."""

    async def go() -> tuple[AnswerKind, list[dict[str, Any]]]:
        async_journal = AsyncJournal(journal)
        with respx.mock(base_url=ORIGIN) as mock:
            route = mock.post(ROUTE).mock(side_effect=answers)
            async with LobuClient(ORIGIN, lambda: "owl_pat_" + "o" * 32) as client:
                outbox = Outbox(
                    client,
                    async_journal,
                    server=ORIGIN,
                    worker_id=WORKER,
                    server_error_budget=budget,
                    max_backoff=0.01,  # retries follow each other at once
                )
                outbox.on_refused = refused
                delivered = await outbox.flush(give_up)
            bodies = [json.loads(call.request.content) for call in route.calls]
        async_journal.close()
        return delivered[-1].kind, bodies

    return asyncio.run(go())


def row(journal: Journal) -> Any:
    reopened = Journal(journal.path)
    try:
        entry = reopened.get(ORIGIN, RUN_ID)
    finally:
        reopened.close()
    assert entry is not None
    return entry


def test_an_accepted_result_is_acknowledged_with_the_servers_status(journal: Journal) -> None:
    finished(journal)
    kind, bodies = deliver(journal, [httpx.Response(200, json={"ok": True, "status": "completed"})])
    assert kind is AnswerKind.OK
    assert bodies == [
        {
            "worker_id": WORKER,
            "output": "all good",
            "error": None,
            "duration_ms": 12,
            "exit_code": 0,
            "exit_signal": None,
            "exit_reason": "ok",
        }
    ]
    entry = row(journal)
    assert (entry.state, entry.answer) == (JournalState.ACKNOWLEDGED, "completed")
    assert entry.attempts == 1


def test_a_409_not_in_progress_is_final_and_says_why(journal: Journal) -> None:
    finished(journal)
    kind, _ = deliver(journal, [httpx.Response(409, json={"error": "Run is not in progress"})])
    assert kind is AnswerKind.FINAL
    entry = row(journal)
    assert (entry.state, entry.answer) == (JournalState.ACKNOWLEDGED, "already final")
    assert entry.server_message == FINAL_409_NOTE


def test_transient_failures_are_retried_until_the_server_takes_it(journal: Journal) -> None:
    finished(journal)
    answers = [
        httpx.Response(503, json={"error": "deploying"}),
        httpx.Response(429, json={"error": "slow down"}),
        httpx.Response(200, json={"ok": True, "status": "completed", "idempotent": True}),
    ]
    kind, bodies = deliver(journal, answers)
    assert kind is AnswerKind.OK
    assert len(bodies) == 3
    assert bodies[0] == bodies[2]  # the same report each time
    entry = row(journal)
    assert (entry.state, entry.answer, entry.attempts) == (
        JournalState.ACKNOWLEDGED,
        "completed (idempotent)",
        3,
    )


def test_giving_up_leaves_the_result_queued(journal: Journal) -> None:
    finished(journal)
    answers = [httpx.Response(503, json={"error": "down"})] * 5
    kind, bodies = deliver(journal, answers, give_up=after(2))
    assert kind is AnswerKind.TRANSIENT
    assert len(bodies) == 2
    assert row(journal).state == JournalState.FINISHED


def test_a_rejected_result_is_kept_as_dead(journal: Journal) -> None:
    finished(journal)
    kind, _ = deliver(journal, [httpx.Response(400, json={"error": "Invalid body"})])
    assert kind is AnswerKind.REJECTED
    entry = row(journal)
    assert (entry.state, entry.answer) == (JournalState.DEAD, "rejected")
    assert "Invalid body" in (entry.server_message or "")
    assert entry.output == "all good"  # the user can still read it


def test_a_success_refused_by_the_same_500_is_closed_as_failed(journal: Journal) -> None:
    finished(journal)
    same = httpx.Response(500, json={"error": "duplicate key value violates unique constraint"})
    answers = [same, same, httpx.Response(200, json={"ok": True, "status": "failed"})]
    kind, bodies = deliver(journal, answers, budget=2)
    assert kind is AnswerKind.OK
    assert bodies[0]["error"] is None
    assert "refused this run's result 2 times" in bodies[2]["error"]
    assert bodies[2]["output"] == "all good"
    entry = row(journal)
    assert (entry.state, entry.answer) == (JournalState.ACKNOWLEDGED, "failed")
    assert entry.exit_reason == ExitReason.ERROR_MESSAGE


def test_an_outage_of_changing_5xx_never_turns_a_success_into_a_failure(journal: Journal) -> None:
    finished(journal)
    answers = [
        httpx.Response(502, text="Bad Gateway"),
        httpx.Response(500, json={"error": "one thing"}),
        httpx.Response(500, json={"error": "another thing"}),
        httpx.Response(200, json={"ok": True, "status": "completed"}),
    ]
    _, bodies = deliver(journal, answers, budget=2)
    assert all(body["error"] is None for body in bodies)


def test_a_failure_refused_by_the_same_500_stops_the_heartbeat(journal: Journal) -> None:
    finished(journal, FAILED)
    refused: list[int] = []
    same = httpx.Response(500, json={"error": "duplicate key"})
    kind, _ = deliver(journal, [same] * 3, give_up=after(3), budget=2, refused=refused.append)
    assert kind is AnswerKind.TRANSIENT
    assert refused
    assert set(refused) == {RUN_ID}
    assert row(journal).state == JournalState.FINISHED  # still queued, never dropped


def test_an_answered_post_is_counted_in_the_transaction_that_settles_it(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished(journal)
    transactions = []
    real_tx = journal._tx
    monkeypatch.setattr(journal, "_tx", lambda: transactions.append(1) or real_tx())
    deliver(journal, [httpx.Response(200, json={"ok": True, "status": "completed"})])
    assert len(transactions) == 1  # the settle, attempt included: no transaction of its own
    assert row(journal).attempts == 1


def test_a_refused_token_counts_its_attempt_and_keeps_the_result(journal: Journal) -> None:
    finished(journal)
    kind, _ = deliver(journal, [httpx.Response(401, json={"error": "Unauthorized"})])
    assert kind is AnswerKind.AUTH
    entry = row(journal)
    assert (entry.state, entry.attempts) == (JournalState.FINISHED, 1)


def test_a_result_whose_settle_waits_for_disk_space_is_not_sent_again(tmp_path: Path) -> None:
    # The post is answered, but the journal cannot record it (a full disk): the row still
    # says "finished". The next periodic flush must not post that result a second time.
    journal = FullAfterResult(tmp_path / "journal.sqlite3")
    finished(journal)
    journal.full = True

    async def go() -> list[dict[str, Any]]:
        async_journal = AsyncJournal(journal)
        with respx.mock(base_url=ORIGIN) as mock:
            ok = httpx.Response(200, json={"ok": True, "status": "completed"})
            route = mock.post(ROUTE).mock(side_effect=[ok, ok])
            async with LobuClient(ORIGIN, lambda: "owl_pat_" + "o" * 32) as client:
                outbox = Outbox(
                    client,
                    async_journal,
                    server=ORIGIN,
                    worker_id=WORKER,
                    server_error_budget=8,
                    max_backoff=0.01,
                )
                await outbox.flush()
                await outbox.flush()  # the periodic flush, a little later
                journal.full = False
                assert await async_journal.writable_again()
                await outbox.flush()
            bodies = [json.loads(call.request.content) for call in route.calls]
        async_journal.close()
        return bodies

    assert len(asyncio.run(go())) == 1
    assert row(journal).state == JournalState.ACKNOWLEDGED


class FullAfterResult(Journal):
    """A journal that takes no write once `full` is set (the disk filled up)."""

    full = False

    def _tx(self):  # type: ignore[no-untyped-def]
        if self.full:
            raise JournalWriteError(f"cannot write the journal {self.path} (disk is full)")
        return super()._tx()
