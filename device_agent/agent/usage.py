"""What each run cost, kept in the journal's file: the `usage` table and its queries.

One row per CLI round of a run (a run the server resumes has several). A row is
written before the round's CLI starts, so that a round cut short by a crash still
counts as a run (whose cost is then unknown), and completed when the CLI ends
with what it reported: its cost in US dollars where it states one (NULL where it
does not: unknown, never guessed), its tokens in and out where it counts them.
A round whose CLI never started (it was not found, the run was refused) costs 0.

`day` is the owner's local calendar day the round started on: the daily limit
(`device_agent.agent.limits`) adds a day's rows up. The table is the usage
feature's own: the runs table and its queries are not touched, and a journal
made before it gets it when it is next opened.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Final

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS usage (
    server      TEXT    NOT NULL,
    run_id      INTEGER NOT NULL,
    round       INTEGER NOT NULL,
    day         TEXT    NOT NULL,
    started_at  REAL    NOT NULL,
    agent_kind  TEXT,
    finished    INTEGER NOT NULL DEFAULT 0,
    cost_usd    REAL,
    tokens_in   INTEGER,
    tokens_out  INTEGER,
    PRIMARY KEY (server, run_id, round)
);
CREATE INDEX IF NOT EXISTS usage_day ON usage (day);
"""
KEEP_DAYS: Final = 2.0  # a row outlives its run's journal row this long: today's totals need it

RunKey = tuple[str, int]  # (server, run_id)
RoundKey = tuple[str, int, int]  # (server, run_id, round)


def local_day(epoch: float) -> str:
    """The owner's local calendar day of `epoch`, as YYYY-MM-DD."""
    return time.strftime("%Y-%m-%d", time.localtime(epoch))


@dataclass(frozen=True)
class UsageRow:
    server: str
    run_id: int
    round: int
    day: str
    started_at: float
    agent_kind: str | None
    finished: bool
    cost_usd: float | None
    tokens_in: int | None
    tokens_out: int | None

    @property
    def key(self) -> RoundKey:
        return (self.server, self.run_id, self.round)

    @property
    def run(self) -> RunKey:
        return (self.server, self.run_id)


@dataclass(frozen=True)
class DayTotals:
    """One day's usage. `unpriced_runs`: runs with a round whose cost is not known (its CLI
    reports none, or it was cut short), so `cost_usd` is a partial total."""

    day: str
    runs: int = 0
    cost_usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    unpriced_runs: int = 0

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    @property
    def cost_partial(self) -> bool:
        return self.unpriced_runs > 0

    def as_dict(self) -> dict[str, object]:
        return {
            "day": self.day,
            "runs": self.runs,
            "cost_usd": round(self.cost_usd, 6),
            "cost_partial": self.cost_partial,
            "unpriced_runs": self.unpriced_runs,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "tokens": self.tokens,
        }


def totals_of(
    day: str,
    rows: Iterable[UsageRow],
    *,
    in_flight: Iterable[RoundKey] = (),
    pending: Iterable[RunKey] = (),
) -> DayTotals:
    """Add up `day`'s rows. A round not finished is unknown-cost unless it is `in_flight`
    (its CLI still runs: its cost comes when it ends); `pending` are runs claimed whose first
    CLI has not started yet: they count as runs."""
    running = set(in_flight)
    runs: set[RunKey] = set(pending)
    unpriced: set[RunKey] = set()
    cost, tokens_in, tokens_out = 0.0, 0, 0
    for row in rows:
        if row.day != day:
            continue
        runs.add(row.run)
        if row.cost_usd is not None:
            cost += row.cost_usd
        elif row.finished or row.key not in running:
            unpriced.add(row.run)
        tokens_in += row.tokens_in or 0
        tokens_out += row.tokens_out or 0
    return DayTotals(day, len(runs), cost, tokens_in, tokens_out, len(unpriced))


@dataclass(frozen=True)
class RunCost:
    """What one run cost over its rounds, for `history`."""

    rounds: int
    cost_usd: float | None  # the sum of the rounds' reported costs; None: none reported
    cost_partial: bool  # some round's cost is not known
    tokens_in: int | None
    tokens_out: int | None

    def as_dict(self) -> dict[str, object]:
        return {
            "rounds": self.rounds,
            "cost_usd": self.cost_usd,
            "cost_partial": self.cost_partial,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
        }


class UsageBook:
    """The `usage` table of a journal's database. The journal makes one when it opens its
    file (creating the table if it is not there yet) and runs its calls on its thread."""

    def __init__(
        self,
        db: sqlite3.Connection,
        transaction: Callable[[], AbstractContextManager[sqlite3.Connection]],
        unsynced: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    ) -> None:
        self._db = db
        self._tx = transaction
        self._unsynced = unsynced
        db.executescript(_SCHEMA)

    # ----------------------------------------------------------- writes

    def start_round(
        self,
        server: str,
        run_id: int,
        round_: int,
        *,
        day: str,
        started_at: float,
        agent_kind: str | None,
    ) -> None:
        """A round's CLI is about to start: from now on it counts, its cost still unknown.

        Committed without waiting for the disk (`unsynced`), like `finish_round`: a crash
        of the agent keeps it; a power cut before the result's fsync loses it, together
        with the round's work."""
        with self._unsynced(), self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO usage (server, run_id, round, day, started_at, agent_kind)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (server, run_id, round_, day, started_at, agent_kind),
            )

    def finish_round(
        self,
        server: str,
        run_id: int,
        round_: int,
        *,
        cost_usd: float | None,
        tokens_in: int | None,
        tokens_out: int | None,
    ) -> None:
        """The round ended: what its CLI reported (None where it reported nothing).

        Committed without waiting for the disk (`unsynced`): the run's result is written
        next with an fsync (`Journal.record_result`), and in WAL mode that fsync makes every
        commit before it durable too. A power cut before it loses both, and the round reads
        as cut short, its cost unknown, as for a crash mid-run."""
        with self._unsynced(), self._tx() as db:
            db.execute(
                "UPDATE usage SET finished=1, cost_usd=?, tokens_in=?, tokens_out=?"
                " WHERE server=? AND run_id=? AND round=?",
                (cost_usd, tokens_in, tokens_out, server, run_id, round_),
            )

    def prune(self, before: float) -> int:
        """Drop rows started before `before` whose run the journal no longer keeps."""
        with self._tx() as db:
            cursor = db.execute(
                "DELETE FROM usage WHERE started_at < ? AND NOT EXISTS ("
                " SELECT 1 FROM runs WHERE runs.server = usage.server"
                " AND runs.run_id = usage.run_id)",
                (before,),
            )
        return int(cursor.rowcount)

    # ------------------------------------------------------------ reads

    def day_rows(self, day: str) -> list[UsageRow]:
        rows = self._db.execute("SELECT * FROM usage WHERE day=?", (day,)).fetchall()
        return [_row(row) for row in rows]

    def day_totals(self, day: str) -> DayTotals:
        """`day`'s totals as the journal has them (nothing is in flight for a reader)."""
        return totals_of(day, self.day_rows(day))

    def of_runs(self, runs: Iterable[RunKey]) -> dict[RunKey, RunCost]:
        """What each of `runs` cost; a run with no row (no CLI started) is left out."""
        found: dict[RunKey, list[UsageRow]] = {}
        for server, run_id in set(runs):
            rows = self._db.execute(
                "SELECT * FROM usage WHERE server=? AND run_id=? ORDER BY round",
                (server, run_id),
            ).fetchall()
            if rows:
                found[(server, run_id)] = [_row(row) for row in rows]
        return {key: _run_cost(rows) for key, rows in found.items()}


def _row(row: sqlite3.Row) -> UsageRow:
    return UsageRow(
        server=row["server"],
        run_id=row["run_id"],
        round=row["round"],
        day=row["day"],
        started_at=row["started_at"],
        agent_kind=row["agent_kind"],
        finished=bool(row["finished"]),
        cost_usd=row["cost_usd"],
        tokens_in=row["tokens_in"],
        tokens_out=row["tokens_out"],
    )


def _run_cost(rows: list[UsageRow]) -> RunCost:
    costs = [row.cost_usd for row in rows if row.cost_usd is not None]
    return RunCost(
        rounds=len(rows),
        cost_usd=sum(costs) if costs else None,
        cost_partial=any(row.cost_usd is None for row in rows),
        tokens_in=_sum(row.tokens_in for row in rows),
        tokens_out=_sum(row.tokens_out for row in rows),
    )


def _sum(values: Iterator[int | None]) -> int | None:
    counts = [value for value in values if value is not None]
    return sum(counts) if counts else None
