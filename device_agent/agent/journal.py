"""The durable record of every claimed run and every unsent result (SQLite, WAL).

A run moves through these states, each written before the step it guards:

    claimed ──> finished ──> acknowledged        (the server has a final answer)
       ↑  │         ├──────> dead                (the server can never accept it)
       │  │         └──────> claimed             (the answer asked for another round)
       │  └───────────────> abandoned            (the server told us to stop; nothing to send)

`claimed` is written before the CLI starts, so a crash mid-run is found on the
next start and reported instead of silently re-executed. `finished` is the
outbox: its rows are sent until the server answers for good. Only
`acknowledged` and `abandoned` rows are ever pruned.

The file stays bounded while the agent runs (`Retention`): each settle keeps the
head and tail of a settled run's output within `keep_output_bytes`; every
`Retention.every` settled runs, and whenever the file grew by `PRUNE_AT_BYTES`
since, settled rows past `keep_days` / `keep_rows` are dropped; freed pages go
back to the file system (incremental vacuum, then a WAL checkpoint). So the
journal holds at most `keep_rows + every - 1` settled rows. Pending and dead
rows are kept whole: their output is still to be sent, or is all the user has.

Outputs live in a table of their own (`outputs`), so that a query that lists
runs never touches them, not even on disk (SQLite reaches a column stored
after a large value by reading every page of that value): an output is read
one run at a time (`get`, `with_run_id`), never hundreds at once. Journals made
before that keep theirs in `runs.output` until the agent's start moves them.

The `held_poll` row says that a poll the server may hold is out; a start that
finds it open and no run claimed since learns the last agent died during it,
when the server may have claimed a run into a connection nobody reads
(docs/protocol.md, "Poll and claim").

The class is synchronous and logs nothing: `status` and `history` read it
without loading the event loop or the logging stack. What its upkeep did (rows
dropped, a compaction, space it could not give back) it returns as `Upkeep`.
The daemon drives it through `agent.journal_thread.AsyncJournal`, on one
dedicated thread so the event loop never waits on an fsync and there is exactly
one writer; that side logs what an `Upkeep` says.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Final, TypeVar

from device_agent.agent.result import TRUNCATED, ExitReason, Report
from device_agent.agent.transcripts import SCHEMA as TRANSCRIPTS_SCHEMA
from device_agent.agent.usage import UsageBook
from device_agent.errors import DeviceAgentError, ExitCode
from device_agent.textsafe import encodable

Method = TypeVar("Method", bound=Callable[..., Any])


def unhurried(method: Method) -> Method:
    """Mark a `Journal` write that no run waits for: on the journal's thread it yields to
    the others (`journal_thread.JournalThread`)."""
    method.unhurried = True  # type: ignore[attr-defined]
    return method


class JournalState(enum.StrEnum):
    CLAIMED = "claimed"
    FINISHED = "finished"
    ACKNOWLEDGED = "acknowledged"
    DEAD = "dead"
    ABANDONED = "abandoned"


CLAIMED: Final = JournalState.CLAIMED
FINISHED: Final = JournalState.FINISHED
ACKNOWLEDGED: Final = JournalState.ACKNOWLEDGED
DEAD: Final = JournalState.DEAD
ABANDONED: Final = JournalState.ABANDONED
SETTLED: Final = frozenset({ACKNOWLEDGED, DEAD, ABANDONED})  # the server has answered for good

TRUNCATED_NOTE: Final = f"\n{TRUNCATED}"  # what ends an output cut at the cap

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS runs (
    server          TEXT    NOT NULL,
    run_id          INTEGER NOT NULL,
    run_type        TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    watcher_id      TEXT,
    watcher_name    TEXT,
    agent_kind      TEXT,
    payload_digest  TEXT,
    claimed_at      REAL    NOT NULL,
    finished_at     REAL,
    acked_at        REAL,
    output          TEXT,
    error           TEXT,
    exit_code       INTEGER,
    exit_signal     TEXT,
    exit_reason     TEXT,
    duration_ms     INTEGER,
    details         TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    answer          TEXT,
    server_message  TEXT,
    finalize_attempt INTEGER NOT NULL DEFAULT 0,
    output_bytes    INTEGER,
    PRIMARY KEY (server, run_id)
);
CREATE INDEX IF NOT EXISTS runs_state ON runs (state);
CREATE INDEX IF NOT EXISTS runs_claimed ON runs (claimed_at);
CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL);
CREATE TABLE IF NOT EXISTS abandoned_polls (
    server  TEXT PRIMARY KEY,
    at      REAL NOT NULL,
    reason  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS held_poll (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    server  TEXT    NOT NULL,
    since   REAL    NOT NULL,
    ended   REAL
);
CREATE TABLE IF NOT EXISTS outputs (
    server  TEXT    NOT NULL,
    run_id  INTEGER NOT NULL,
    output  TEXT    NOT NULL,
    PRIMARY KEY (server, run_id)
);
CREATE TRIGGER IF NOT EXISTS runs_deleted AFTER DELETE ON runs BEGIN
    DELETE FROM outputs WHERE server = old.server AND run_id = old.run_id;
END;
"""
# PRAGMA user_version of a journal whose outputs are all in `outputs` (`runs.output` is
# left NULL); a journal below it is moved there by `prune`.
OUTPUTS_APART: Final = 1
# Columns added after the first release: (name, definition) for journals made before them.
_ADDED_COLUMNS: Final = (
    ("finalize_attempt", "INTEGER NOT NULL DEFAULT 0"),
    ("output_bytes", "INTEGER"),  # of `output` as stored, in UTF-8
)
PRUNABLE: Final = (ACKNOWLEDGED, ABANDONED)  # settled rows retention may shorten or drop
# The WAL is cut back to this after a checkpoint; it grows past it only while one
# transaction (one big output) needs it.
WAL_LIMIT_BYTES: Final = 4 * 1024 * 1024
# Freed pages are given back to the file system once there are this many bytes of them;
# below that, the next runs reuse them.
RECLAIM_AT_BYTES: Final = 4 * 1024 * 1024
# Settled rows past `keep_days` / `keep_rows` are dropped every `Retention.every` settled
# runs, and sooner once the file (with its WAL) grew by this much since the last time.
PRUNE_AT_BYTES: Final = 4 * 1024 * 1024
PRUNE_EVERY_MAX: Final = 50  # settled runs between prunes at most, whatever `keep_rows`
# What `Upkeep.failed` says.
RECLAIM_FAILED: Final = (
    "could not give the journal's free space back; it is tried again at the next settle"
)
COMPACT_FAILED: Final = "could not compact the journal; it is tried again at the next start"


@dataclass(frozen=True)
class Retention:
    """What the journal keeps of settled runs (`PRUNABLE`): rows younger than `keep_days`,
    at most `keep_rows` of them, each output within `keep_output_bytes` (its head and tail).
    Pending and dead rows are always kept whole.

    Rows are dropped every `every` settled runs (and when the file grew by
    `PRUNE_AT_BYTES`), not at each one: the query that finds the rows past `keep_rows`
    reads all of them, which would cost more than the rest of a run's journal writes.
    Between two prunes up to `every - 1` more settled rows are kept."""

    keep_days: float = 30.0
    keep_rows: int = 1000
    keep_output_bytes: int = 32 * 1024
    prune_every: int | None = None  # settled runs between prunes; None: from `keep_rows`

    @property
    def every(self) -> int:
        """Settled runs between two prunes: `prune_every`, else a twentieth of `keep_rows`
        (so at most 5 % more rows are kept), from 1 to `PRUNE_EVERY_MAX`."""
        if self.prune_every is not None:
            return max(1, self.prune_every)
        return min(PRUNE_EVERY_MAX, max(1, self.keep_rows // 20))


@dataclass(frozen=True)
class HeldPoll:
    """A poll that was out when the agent that sent it stopped without recording its end."""

    server: str
    since: float  # when it was sent (the journal's clock: epoch seconds)


@dataclass(frozen=True)
class Upkeep:
    """What keeping the file bounded did, for the journal's owner to log (the journal
    logs nothing itself). A failure here loses nothing: the data is committed, and the
    space is given back at a later try."""

    pruned: int = 0  # settled rows dropped
    compacted: tuple[int, int] | None = None  # bytes on disk before and after a VACUUM
    failed: str | None = None  # what could not be done, and when it is tried again
    error: str | None = None  # the SQLite error that stopped it


class JournalError(DeviceAgentError):
    """The journal file cannot be opened or used; the message says what to do."""

    exit_code = ExitCode.INTERNAL


class JournalWriteError(JournalError):
    """A write failed: a full disk, a file-size limit, a read-only file system."""


@dataclass(frozen=True)
class Entry:
    """One run's row. Rows from a query that lists runs (`recent`, `in_state`) carry no
    output (`output` None; `output_bytes` says how much there is): `get` reads it."""

    server: str
    run_id: int
    run_type: str
    state: str
    watcher_id: str | None
    watcher_name: str | None
    agent_kind: str | None
    claimed_at: float
    finished_at: float | None
    acked_at: float | None
    output: str | None
    error: str | None
    exit_code: int | None
    exit_signal: str | None
    exit_reason: str | None
    duration_ms: int | None
    details: Mapping[str, Any]
    attempts: int
    answer: str | None
    server_message: str | None
    finalize_attempt: int = 0  # the round of the run this result belongs to
    output_bytes: int | None = None  # the stored output's size in UTF-8; None: no output yet

    def report(self) -> Report:
        """The report to send for a finished row."""
        return Report(
            output=self.output or "",
            error=self.error,
            duration_ms=self.duration_ms or 0,
            exit_code=self.exit_code,
            exit_signal=self.exit_signal,
            exit_reason=ExitReason.read(self.exit_reason, failed=bool(self.error)),
            details=self.details,
        )

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class Journal:
    def __init__(
        self,
        path: Path,
        *,
        output_cap: int = 4 * 1024 * 1024,
        retention: Retention = Retention(),  # frozen: one default serves every journal
        clock: Callable[[], float] = time.time,
        reclaim_at: int = RECLAIM_AT_BYTES,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self.retention = retention
        self._output_cap = output_cap
        self._clock = clock
        self._reclaim_at = reclaim_at
        self._settled_since_prune = 0
        self._bytes_at_prune = 0  # the file's size after the last prune (`prune` sets it)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            # First: it takes effect only in a file with no tables yet (an older journal is
            # converted by `prune`'s one VACUUM).
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a result is the user's data
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            new = not self._db.execute("SELECT 1 FROM sqlite_master WHERE name='runs'").fetchone()
            self._db.executescript(_SCHEMA)
            self._add_missing_columns()
            if new:
                self._db.execute(f"PRAGMA user_version={OUTPUTS_APART}")
            self._db.executescript(TRANSCRIPTS_SCHEMA)  # device_agent/agent/transcripts.py
            # What runs cost: a table of its own.
            self.usage = UsageBook(self._db, self._tx, self._unsynced)
        except sqlite3.DatabaseError as exc:
            raise JournalError(
                f"the journal {path} cannot be used ({exc}): move it aside to start afresh "
                "(results still in it can be read with the sqlite3 tool)"
            ) from None
        path.chmod(0o600)

    def close(self) -> None:
        self._db.close()

    def _add_missing_columns(self) -> None:
        present = {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}
        for name, definition in _ADDED_COLUMNS:
            if name not in present:
                self._db.execute(f"ALTER TABLE runs ADD COLUMN {name} {definition}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")  # inside: a failed COMMIT (disk full) rolls back too
            except BaseException:
                # SQLite may already have rolled back (a full disk does): a second ROLLBACK
                # would raise "no transaction is active" and hide the real error.
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            raise JournalWriteError(
                f"cannot write the journal {self.path} ({exc}): free some disk space, or make "
                f"{self.path.parent} writable; no new runs are taken until it can be written"
            ) from None

    def probe_write(self) -> None:
        """Write a few bytes, to learn whether the journal can be written again."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?)", (self._clock(),))

    @unhurried
    def note_abandoned_poll(self, server: str, reason: str) -> None:
        """Remember the latest poll to `server` given up on before its answer: the server
        may have claimed a run into it that never arrived (`status` says so)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO abandoned_polls (server, at, reason) VALUES (?, ?, ?)",
                (server, self._clock(), encodable(reason)),
            )

    def abandoned_poll(self, server: str) -> tuple[float, str] | None:
        """When the latest poll to `server` was given up on, and why; None if never."""
        row = self._db.execute(
            "SELECT at, reason FROM abandoned_polls WHERE server = ?", (server,)
        ).fetchone()
        return (float(row["at"]), str(row["reason"])) if row is not None else None

    def unrecorded_result(self, server: str, run_id: int, report: Report) -> Entry:
        """A claimed run's row with a result the journal could not take, held in memory
        so that it can still be delivered."""
        entry = self.get(server, run_id)
        if entry is None:
            raise JournalError(f"run {run_id} was never claimed in the journal {self.path}")
        return replace(
            entry,
            state=FINISHED,
            output=report.output,
            output_bytes=utf8_size(report.output),
            error=report.error,
            exit_code=report.exit_code,
            exit_signal=report.exit_signal,
            exit_reason=report.exit_reason,
            duration_ms=report.duration_ms,
            details=dict(report.details),
        )

    # ----------------------------------------------------------- writes

    def record_claim(
        self,
        server: str,
        run_id: int,
        *,
        run_type: str,
        watcher_id: str | None,
        watcher_name: str | None,
        agent_kind: str | None,
        payload_digest: str,
    ) -> bool:
        """Record a claim before executing. False if this run was already claimed once.

        A settled row with the same id but another payload is a different run: the server
        numbers runs anew after its database was reset. It is replaced, not mistaken for a
        repeat (a pending row is never replaced: its result still waits to be sent).
        """
        with self._tx() as db:
            db.execute(
                "DELETE FROM runs WHERE server=? AND run_id=? AND payload_digest!=?"
                " AND state IN (?, ?, ?)",
                (server, run_id, payload_digest, ACKNOWLEDGED, DEAD, ABANDONED),
            )
            cursor = db.execute(
                "INSERT OR IGNORE INTO runs (server, run_id, run_type, state, watcher_id,"
                " watcher_name, agent_kind, payload_digest, claimed_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    server,
                    run_id,
                    encodable(run_type),
                    CLAIMED,
                    _text_or_none(watcher_id),
                    _text_or_none(watcher_name),
                    _text_or_none(agent_kind),
                    payload_digest,
                    self._clock(),
                ),
            )
            return cursor.rowcount == 1

    def record_result(self, server: str, run_id: int, report: Report) -> Entry:
        """The CLI finished (or could not run): the result joins the outbox. Returns the row."""
        output = report.output
        if len(output) > self._output_cap + len(TRUNCATED_NOTE):  # the executor's cap fits
            output = output[: self._output_cap] + TRUNCATED_NOTE
        output = encodable(output)  # what is stored is what gets delivered
        with self._tx() as db:
            updated = db.execute(
                "UPDATE runs SET state=?, finished_at=?, output=NULL, output_bytes=?, error=?,"
                " exit_code=?, exit_signal=?, exit_reason=?, duration_ms=?, details=?"
                " WHERE server=? AND run_id=?",
                (
                    FINISHED,
                    self._clock(),
                    utf8_size(output),
                    _text_or_none(report.error),
                    report.exit_code,
                    report.exit_signal,
                    report.exit_reason,
                    report.duration_ms,
                    json.dumps(dict(report.details), default=str),
                    server,
                    run_id,
                ),
            )
            if updated.rowcount:
                db.execute(
                    "INSERT OR REPLACE INTO outputs (server, run_id, output) VALUES (?, ?, ?)",
                    (server, run_id, output),
                )
            # Not the output just written: reading a 4 MiB output back would hold it twice.
            row = db.execute(_ROW_BUT_OUTPUT, (server, run_id)).fetchone()
        if row is None:
            raise JournalError(f"run {run_id} was never claimed in the journal {self.path}")
        return _entry(row, output=output)

    def next_round(self, server: str, run_id: int, attempt: int) -> None:
        """The server asked for another round of this run: it is claimed again, so that a
        restart in the middle reports it as crashed rather than running a round twice."""
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET state=?, finalize_attempt=? WHERE server=? AND run_id=?",
                (CLAIMED, attempt, server, run_id),
            )

    def replace_report(self, server: str, run_id: int, report: Report) -> None:
        """Swap the report still to be sent (e.g. a success the server keeps refusing:
        docs/protocol.md, "What a real server does")."""
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET error=?, exit_reason=? WHERE server=? AND run_id=?",
                (report.error, report.exit_reason, server, run_id),
            )

    def count_attempt(self, server: str, run_id: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET attempts = attempts + 1 WHERE server=? AND run_id=?",
                (server, run_id),
            )

    @unhurried
    def settle(
        self,
        server: str,
        run_id: int,
        *,
        state: JournalState,
        answer: str,
        message: str | None,
        attempts: int = 0,
    ) -> Upkeep:
        """The server answered for good (acknowledged or dead), or told us to stop (abandoned).
        `attempts`: delivery attempts to count in the same transaction (the one answered).

        Retention is applied in the same transaction: a settled output is cut to its head
        and tail, and every `Retention.every` settled runs (or once the file grew by
        `PRUNE_AT_BYTES`) rows past `keep_days` / `keep_rows` go; then freed space is
        given back.

        Committed without waiting for the disk (`_unsynced`): a settle that a power cut
        loses leaves the result pending, and the next start sends it again, which the
        server answers as a repeat: 409 `Run is not in progress` (docs/protocol.md, "How
        the agent settles a result"). Returns what retention did."""
        if state not in SETTLED:
            raise ValueError(f"not a settled state: {state}")
        self._settled_since_prune += 1
        due = self._settled_since_prune >= self.retention.every or (
            disk_bytes(self.path) - self._bytes_at_prune >= PRUNE_AT_BYTES
        )
        with self._unsynced(), self._tx() as db:
            db.execute(
                "UPDATE runs SET state=?, answer=?, server_message=?, acked_at=?,"
                " attempts = attempts + ? WHERE server=? AND run_id=?",
                (state, answer, message, self._clock(), attempts, server, run_id),
            )
            if state in PRUNABLE:
                self._bound_output(db, server, run_id)
            pruned = self._prune(db) if due else 0
        upkeep = replace(self._reclaim(), pruned=pruned)
        if due:
            self._pruned()
        return upkeep

    def _pruned(self) -> None:
        """Start counting afresh towards the next prune."""
        self._settled_since_prune = 0
        self._bytes_at_prune = disk_bytes(self.path)

    def prune(self) -> Upkeep:
        """Apply `Retention` to the whole journal (at start-up): bound every settled output,
        drop old settled rows (never anything pending or dead), give the space back.
        A journal made before `outputs` has its outputs moved there, and one made before
        incremental vacuum is converted by a VACUUM, once each. Returns what it did."""
        limit = self.retention.keep_output_bytes
        with self._tx() as db:
            pruned = self._prune(db)
            apart = db.execute("PRAGMA user_version").fetchone()[0] >= OUTPUTS_APART
            if not apart:  # outputs still in `runs`: measured here, moved below
                db.execute(
                    "UPDATE runs SET output_bytes = length(CAST(output AS BLOB))"
                    " WHERE output IS NOT NULL AND output_bytes IS NULL"
                )
            too_long = db.execute(
                "SELECT server, run_id FROM runs WHERE state IN (?, ?) AND output_bytes > ?",
                (*PRUNABLE, limit),
            ).fetchall()
            for server, run_id in too_long:  # one output in memory at a time
                self._bound_output(db, server, run_id)  # (cut short, it moves to `outputs`)
            if not apart:
                _move_outputs_apart(db)
        if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] != _INCREMENTAL:
            upkeep = self._convert()
        else:
            upkeep = self._reclaim()
        self._pruned()
        return replace(upkeep, pruned=pruned)

    def _prune(self, db: sqlite3.Connection) -> int:
        cutoff = self._clock() - self.retention.keep_days * 86400
        by_age = db.execute(
            "DELETE FROM runs WHERE state IN (?, ?) AND claimed_at < ?", (*PRUNABLE, cutoff)
        ).rowcount
        by_count = db.execute(
            "DELETE FROM runs WHERE state IN (?, ?) AND rowid NOT IN ("
            " SELECT rowid FROM runs WHERE state IN (?, ?) ORDER BY claimed_at DESC LIMIT ?)",
            (*PRUNABLE, *PRUNABLE, self.retention.keep_rows),
        ).rowcount
        return int(by_age + by_count)

    def _bound_output(self, db: sqlite3.Connection, server: str, run_id: int) -> None:
        """Cut this run's stored output to its head and tail if it is over the budget."""
        limit = self.retention.keep_output_bytes
        row = db.execute(
            f"SELECT {_OUTPUT}, r.output_bytes {_WITH_OUTPUT}"
            " WHERE r.server=? AND r.run_id=? AND r.output_bytes > ?",
            (server, run_id, limit),
        ).fetchone()
        if row is None or row[0] is None:
            return
        kept = head_and_tail(row[0], row[1], limit)
        db.execute(
            "INSERT OR REPLACE INTO outputs (server, run_id, output) VALUES (?, ?, ?)",
            (server, run_id, kept),
        )
        db.execute(
            "UPDATE runs SET output=NULL, output_bytes=? WHERE server=? AND run_id=?",
            (utf8_size(kept), server, run_id),
        )

    def _reclaim(self) -> Upkeep:
        """Give freed pages back to the file system once there are enough of them, then
        checkpoint the WAL so the file shrinks now, not at the next start. A failure here
        loses nothing (the data is committed): it is returned, and tried again next time."""
        try:
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            page = self._db.execute("PRAGMA page_size").fetchone()[0]
            if free * page < self._reclaim_at:
                return Upkeep()
            # executescript steps the pragma to its end; execute() would free one page.
            self._db.executescript("PRAGMA incremental_vacuum")
            self._checkpoint()
        except sqlite3.Error as exc:
            return Upkeep(failed=RECLAIM_FAILED, error=str(exc))
        return Upkeep()

    def _convert(self) -> Upkeep:
        """Turn on incremental vacuum in a journal made without it (one VACUUM)."""
        before = disk_bytes(self.path)
        try:
            self._db.execute(f"PRAGMA auto_vacuum={_INCREMENTAL}")
            self._db.execute("VACUUM")
            self._checkpoint()
        except sqlite3.Error as exc:
            return Upkeep(failed=COMPACT_FAILED, error=str(exc))
        return Upkeep(compacted=(before, disk_bytes(self.path)))

    def _checkpoint(self) -> None:
        """Copy the WAL into the file and empty it. A reader (`status`, `history`) holding
        the WAL makes this give up at once rather than hold up the journal's thread: the
        next checkpoint gets it."""
        self._db.execute("PRAGMA busy_timeout=0")
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            self._db.execute("PRAGMA busy_timeout=5000")

    # ------------------------------------------------------------ polls

    def poll_held(self, server: str) -> None:
        """A poll the server may hold is about to go out."""
        with self._unsynced(), self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO held_poll (id, server, since, ended)"
                " VALUES (1, ?, ?, NULL)",
                (server, self._clock()),
            )

    def poll_ended(self) -> None:
        """The held poll was answered without a run, failed, or was cut short by a stop. (A
        poll answered with a run needs no end: the run's claim, recorded next, says it.)"""
        with self._unsynced(), self._tx() as db:
            db.execute(
                "UPDATE held_poll SET ended=? WHERE id=1 AND ended IS NULL", (self._clock(),)
            )

    @contextmanager
    def _unsynced(self) -> Iterator[None]:
        """Commit without waiting for the disk: what is written survives the agent's death
        (the OS has it); a power cut may lose it, unless a later commit waits for the disk
        (in WAL mode, its fsync makes every commit before it durable too).

        Only the claim and the result wait for the disk: a claim must be on disk before
        its CLI starts (never run twice) and a result before it is sent (never lost).
        Everything else a run writes (poll marks, usage rounds, the transcript, the
        server's answer) either precedes the result's fsync or is safe to lose with the
        machine's power: an fsync each would cost more than the rest of the run's work."""
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def unanswered_poll(self) -> HeldPoll | None:
        """The poll that was out when the last agent stopped without recording its end or a
        run claimed since: the server may have claimed a run into it that nobody received."""
        row = self._db.execute(
            "SELECT server, since FROM held_poll h WHERE id=1 AND ended IS NULL AND NOT EXISTS"
            " (SELECT 1 FROM runs r WHERE r.server=h.server AND r.claimed_at >= h.since)"
        ).fetchone()
        return HeldPoll(str(row[0]), float(row[1])) if row else None

    # ------------------------------------------------------------ reads

    def get(self, server: str, run_id: int) -> Entry | None:
        """One run's row, its output included."""
        row = self._db.execute(
            f"{_FULL_ROW} WHERE r.server=? AND r.run_id=?", (server, run_id)
        ).fetchone()
        return _entry(row) if row else None

    def in_state(self, *states: JournalState, server: str | None = None) -> list[Entry]:
        """The rows in these states, oldest first, without their output (`get` reads it)."""
        marks = ",".join("?" * len(states))
        query = f"SELECT {_ALL_BUT_OUTPUT} FROM runs WHERE state IN ({marks})"  # noqa: S608
        params: list[Any] = list(states)
        if server is not None:
            query += " AND server=?"
            params.append(server)
        rows = self._db.execute(query + " ORDER BY claimed_at, run_id", params).fetchall()
        return [_entry(row) for row in rows]

    def with_run_id(self, run_id: int) -> list[Entry]:
        """Every row for this run id, whatever server it came from, outputs included."""
        rows = self._db.execute(f"{_FULL_ROW} WHERE r.run_id=?", (run_id,)).fetchall()
        return [_entry(row) for row in rows]

    def latest_run_type(self, server: str, run_types: tuple[str, ...]) -> str | None:
        """Of `run_types`, the one this device claimed last from `server` (None: none yet)."""
        marks = ",".join("?" * len(run_types))
        row = self._db.execute(
            f"SELECT run_type FROM runs WHERE server=? AND run_type IN ({marks})"  # noqa: S608
            " ORDER BY claimed_at DESC LIMIT 1",
            (server, *run_types),
        ).fetchone()
        return str(row[0]) if row else None

    def recent(self, limit: int = 20) -> list[Entry]:
        """The newest rows, without their output (`get` reads it)."""
        rows = self._db.execute(
            f"SELECT {_ALL_BUT_OUTPUT} FROM runs"  # noqa: S608 - no input
            " ORDER BY claimed_at DESC, run_id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [_entry(row) for row in rows]

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM runs GROUP BY state").fetchall()
        return {state: int(n) for state, n in rows}

    def disk_bytes(self) -> int:
        return disk_bytes(self.path)


_ALL_BUT_OUTPUT: Final = ", ".join(f.name for f in fields(Entry) if f.name != "output")
_ROW_BUT_OUTPUT: Final = f"SELECT {_ALL_BUT_OUTPUT} FROM runs WHERE server=? AND run_id=?"  # noqa: S608 - no input
_WITH_OUTPUT: Final = (
    "FROM runs r LEFT JOIN outputs o ON o.server = r.server AND o.run_id = r.run_id"
)
_OUTPUT: Final = "COALESCE(o.output, r.output)"  # `runs.output`: a journal not moved yet
_FULL_ROW: Final = (
    "SELECT "
    + ", ".join(f"r.{name}" for name in _ALL_BUT_OUTPUT.split(", "))
    + f", {_OUTPUT} AS output {_WITH_OUTPUT}"
)
_INCREMENTAL: Final = 2  # PRAGMA auto_vacuum's value for incremental vacuum


def _move_outputs_apart(db: sqlite3.Connection) -> None:
    """Move the outputs left in `runs` (a journal made before `outputs` existed) into it,
    once. Settled outputs over the budget are moved already, cut short: what is copied
    here is small, or still to be delivered."""
    db.execute(
        "INSERT OR REPLACE INTO outputs (server, run_id, output)"
        " SELECT server, run_id, output FROM runs WHERE output IS NOT NULL"
    )
    db.execute("UPDATE runs SET output=NULL WHERE output IS NOT NULL")
    db.execute(f"PRAGMA user_version={OUTPUTS_APART}")


def disk_bytes(path: Path) -> int:
    """What the journal at `path` takes on disk: the file and its WAL (0 for what is absent)."""
    total = 0
    for name in (path, path.with_name(path.name + "-wal")):
        try:
            total += os.stat(name).st_size
        except FileNotFoundError:
            continue
    return total


def utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def head_and_tail(text: str, size: int, limit: int) -> str:
    """`text` (`size` bytes in UTF-8) within `limit` bytes: its head and its tail around a
    line that says how much was cut. Both ends are cut on whole characters."""
    if size <= limit:
        return text
    room = limit - utf8_size(_cut_note(size, size))  # the longest the note can be
    if room <= 0:
        return _encoded(text[:limit])[:limit].decode(errors="ignore")
    head_room, tail_room = room - room // 2, room // 2
    # Characters are sliced first (none is over 4 bytes), so only the ends are encoded.
    head = _encoded(text[:head_room])[:head_room].decode(errors="ignore")
    tail = _encoded(text[-tail_room:])[-tail_room:].decode(errors="ignore") if tail_room else ""
    kept = utf8_size(head) + utf8_size(tail)
    return f"{head}{_cut_note(size - kept, size)}{tail}"


def _encoded(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _cut_note(cut: int, size: int) -> str:
    return (
        f"\n[… {cut} of {size} bytes cut here: the journal keeps the head and tail of a "
        "settled run's output (journal.keep_output_bytes) …]\n"
    )


def _entry(row: sqlite3.Row, **known: Any) -> Entry:
    data = {"output": None} | dict(row) | known  # a listing query leaves the output out
    data.pop("payload_digest", None)
    data["details"] = json.loads(data["details"]) if data.get("details") else {}
    return Entry(**data)


def _text_or_none(text: str | None) -> str | None:
    """Server and CLI text as SQLite can store it: a lone surrogate cannot be UTF-8."""
    return None if text is None else encodable(text)
