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

The class is synchronous; `AsyncJournal` runs it on one dedicated thread so
the event loop never waits on an fsync, and there is exactly one writer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Final, ParamSpec, TypeVar

from device_agent.agent.result import TRUNCATED, ExitReason, Report
from device_agent.agent.transcripts import SCHEMA as TRANSCRIPTS_SCHEMA
from device_agent.errors import DeviceAgentError, ExitCode
from device_agent.logs import get_logger
from device_agent.textsafe import encodable

log = get_logger(__name__)

Method = TypeVar("Method", bound=Callable[..., Any])


def unhurried(method: Method) -> Method:
    """Mark a `Journal` write that no run waits for: on the journal's thread it yields to
    the others (`JournalThread`)."""
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
    PRIMARY KEY (server, run_id)
);
CREATE INDEX IF NOT EXISTS runs_state ON runs (state);
CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL);
"""
# Columns added after the first release: (name, definition) for journals made before them.
_ADDED_COLUMNS: Final = (("finalize_attempt", "INTEGER NOT NULL DEFAULT 0"),)


class JournalError(DeviceAgentError):
    """The journal file cannot be opened or used; the message says what to do."""

    exit_code = ExitCode.INTERNAL


class JournalWriteError(JournalError):
    """A write failed: a full disk, a file-size limit, a read-only file system."""


@dataclass(frozen=True)
class Entry:
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self._output_cap = output_cap
        self._clock = clock
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a result is the user's data
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            self._add_missing_columns()
            self._db.executescript(TRANSCRIPTS_SCHEMA)  # device_agent/agent/transcripts.py
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
            db.execute(
                "UPDATE runs SET state=?, finished_at=?, output=?, error=?, exit_code=?,"
                " exit_signal=?, exit_reason=?, duration_ms=?, details=?"
                " WHERE server=? AND run_id=?",
                (
                    FINISHED,
                    self._clock(),
                    output,
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
    ) -> None:
        """The server answered for good (acknowledged or dead), or told us to stop (abandoned).
        `attempts`: delivery attempts to count in the same transaction (the one answered)."""
        if state not in SETTLED:
            raise ValueError(f"not a settled state: {state}")
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET state=?, answer=?, server_message=?, acked_at=?,"
                " attempts = attempts + ? WHERE server=? AND run_id=?",
                (state, answer, message, self._clock(), attempts, server, run_id),
            )

    def prune(self, *, keep_days: float, keep_rows: int) -> int:
        """Drop old settled rows; never anything pending or dead."""
        cutoff = self._clock() - keep_days * 86400
        with self._tx() as db:
            by_age = db.execute(
                "DELETE FROM runs WHERE state IN (?, ?) AND claimed_at < ?",
                (ACKNOWLEDGED, ABANDONED, cutoff),
            ).rowcount
            by_count = db.execute(
                "DELETE FROM runs WHERE state IN (?, ?) AND rowid NOT IN ("
                " SELECT rowid FROM runs WHERE state IN (?, ?) ORDER BY claimed_at DESC LIMIT ?)",
                (ACKNOWLEDGED, ABANDONED, ACKNOWLEDGED, ABANDONED, keep_rows),
            ).rowcount
        return int(by_age + by_count)

    # ------------------------------------------------------------ reads

    def get(self, server: str, run_id: int) -> Entry | None:
        row = self._db.execute(
            "SELECT * FROM runs WHERE server=? AND run_id=?", (server, run_id)
        ).fetchone()
        return _entry(row) if row else None

    def in_state(self, *states: JournalState, server: str | None = None) -> list[Entry]:
        marks = ",".join("?" * len(states))
        query = f"SELECT * FROM runs WHERE state IN ({marks})"  # noqa: S608 - only placeholders
        params: list[Any] = list(states)
        if server is not None:
            query += " AND server=?"
            params.append(server)
        rows = self._db.execute(query + " ORDER BY claimed_at, run_id", params).fetchall()
        return [_entry(row) for row in rows]

    def with_run_id(self, run_id: int) -> list[Entry]:
        """Every row for this run id, whatever server it came from."""
        rows = self._db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchall()
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
        rows = self._db.execute(
            "SELECT * FROM runs ORDER BY claimed_at DESC, run_id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_entry(row) for row in rows]

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM runs GROUP BY state").fetchall()
        return {state: int(n) for state, n in rows}


_ALL_BUT_OUTPUT: Final = ", ".join(f.name for f in fields(Entry) if f.name != "output")
_ROW_BUT_OUTPUT: Final = f"SELECT {_ALL_BUT_OUTPUT} FROM runs WHERE server=? AND run_id=?"  # noqa: S608 - no input


def _entry(row: sqlite3.Row, **known: Any) -> Entry:
    data = dict(row) | known
    data.pop("payload_digest", None)
    data["details"] = json.loads(data["details"]) if data.get("details") else {}
    return Entry(**data)


P = ParamSpec("P")
T = TypeVar("T")


class JournalThread:
    """One thread that runs the journal's calls, each result handed back to the event loop
    that asked for it.

    What `run_in_executor` does, for one worker and at half its cost: a run makes
    three journal calls, and the executor's futures, condition and thread-count
    bookkeeping cost ~100 us of CPU a call where a queue and one
    `call_soon_threadsafe` cost ~50 us.

    Calls run in the order they came, but for one thing: an `unhurried` call (marking
    a result delivered) waits while others are queued. It holds up no run, while a
    claim queued behind it holds up the next CLI's start.
    """

    def __init__(self) -> None:
        self._urgent: collections.deque[_Job] = collections.deque()
        self._unhurried: collections.deque[_Job] = collections.deque()
        self._wake: queue.SimpleQueue[bool] = queue.SimpleQueue()  # one per job; False: stop
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="journal", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T], *, unhurried: bool = False) -> asyncio.Future[T]:
        if self._closed:
            raise RuntimeError("the journal is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        (self._unhurried if unhurried else self._urgent).append(_Job(fn, future, loop))
        self._wake.put(True)
        return future

    def close(self) -> None:
        """Run what was submitted, then stop."""
        if not self._closed:
            self._closed = True
            self._wake.put(False)  # after every job's wake-up: all of them run first
            self._thread.join()

    def _serve(self) -> None:
        while self._wake.get():
            job = (self._urgent or self._unhurried).popleft()
            try:
                outcome: tuple[Any, BaseException | None] = (job.fn(), None)
            except BaseException as exc:  # handed to the caller, like any result
                outcome = (None, exc)
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                job.loop.call_soon_threadsafe(_resolve, job.future, *outcome)


@dataclass(frozen=True, slots=True)
class _Job:
    fn: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():  # its caller went away; the write itself was done
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class AsyncJournal:
    """The journal, driven from the event loop on its own single thread."""

    def __init__(self, journal: Journal) -> None:
        self.sync = journal
        self._thread = JournalThread()
        self.problem: str | None = None  # why the journal cannot be written; None: it can
        self._deferred: list[Callable[[], object]] = []

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        unhurried = getattr(fn, "unhurried", False)  # see `unhurried`
        try:
            return await self._thread.submit(lambda: fn(*args, **kwargs), unhurried=unhurried)
        except JournalWriteError as exc:
            self._failed(exc)
            raise

    async def write_or_defer(
        self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T | None:
        """A write that delivering a result can go on without: when the journal cannot take
        it, it is kept (in order) and replayed once the journal can be written again.
        Returns what `fn` returned, or None when the write was deferred."""
        if not self._deferred:
            try:
                return await self.call(fn, *args, **kwargs)
            except JournalWriteError:
                pass
        self._deferred.append(lambda: fn(*args, **kwargs))
        return None

    @property
    def deferring(self) -> bool:
        """Whether writes wait to be replayed: until then, rows may lag what happened."""
        return bool(self._deferred)

    async def writable_again(self) -> bool:
        """Try a write and replay what was deferred; True once the journal is healthy."""
        try:
            await self.call(self.sync.probe_write)
            while self._deferred:
                await self._replay(self._deferred[0])
                self._deferred.pop(0)
        except JournalWriteError:
            return False
        if self.problem is not None:
            log.info("the journal can be written again; taking new runs")
            self.problem = None
        return True

    async def _replay(self, write: Callable[[], object]) -> None:
        """Replay one deferred write. One that can never succeed (its row is gone, the file
        is damaged) is dropped with an error, not kept to fail forever: that would end the
        agent's loop, or hold every later write behind it."""
        try:
            await self.call(write)
        except JournalWriteError:
            raise
        except Exception:
            log.exception("a journal write kept while the disk was full cannot be replayed")

    def _failed(self, exc: JournalWriteError) -> None:
        if self.problem is None:  # said once, when it starts; not a traceback per write
            log.error("the journal cannot be written", error=str(exc))
        self.problem = str(exc)

    def close(self) -> None:
        self._thread.close()
        self.sync.close()


def _text_or_none(text: str | None) -> str | None:
    """Server and CLI text as SQLite can store it: a lone surrogate cannot be UTF-8."""
    return None if text is None else encodable(text)
