"""A run's transcript after each round, kept in the journal with the run.

The JSONL itself is built by `device_agent.executors.transcript`. Here it is kept in the
journal's `transcripts` table, one row per run, rewritten after each round, with what
became of its upload (`device_agent.agent.transcript_upload`). The row goes when its run
goes: a trigger drops it with the run's row whatever prunes it, and a transcript whose
run is gone is dropped when the journal is opened. So it is kept as long as the journal
keeps the run, for every lane (`device-agent history --run N --transcript`).

The functions take the `Journal` and use its connection and transactions: the journal
has one writer thread, and `journal_thread.AsyncJournal.call`/`write_or_defer` run these
on it. This module loads no HTTP client: the journal, which commands such as `trigger`
and `history` open, imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from device_agent.agent.journal import Journal  # the journal imports this module

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS transcripts (
    server      TEXT    NOT NULL,
    run_id      INTEGER NOT NULL,
    rounds      INTEGER NOT NULL,
    jsonl       TEXT    NOT NULL,
    updated_at  REAL    NOT NULL,
    upload      TEXT,
    uploaded_at REAL,
    PRIMARY KEY (server, run_id)
);
CREATE TRIGGER IF NOT EXISTS transcripts_go_with_their_run AFTER DELETE ON runs
BEGIN
    DELETE FROM transcripts WHERE server = OLD.server AND run_id = OLD.run_id;
END;
DELETE FROM transcripts WHERE NOT EXISTS (
    SELECT 1 FROM runs WHERE runs.server = transcripts.server AND runs.run_id = transcripts.run_id
);
"""

UPLOADED: Final = "uploaded"  # how the outcome of an upload the server took begins


@dataclass(frozen=True)
class Kept:
    """A run's transcript as the journal keeps it."""

    server: str
    run_id: int
    rounds: int
    jsonl: str
    updated_at: float
    upload: str | None  # what became of its upload; None: none was made
    uploaded_at: float | None

    @property
    def entries(self) -> int:
        """Messages in it (its lines but the header)."""
        return max(0, self.jsonl.count("\n") - 1)

    @property
    def uploaded(self) -> bool:
        return self.upload is not None and self.upload.startswith(UPLOADED)


# ------------------------------------------------------------------ in the journal


def save(journal: Journal, server: str, run_id: int, jsonl: str, *, rounds: int) -> None:
    """Keep the transcript of a run so far (every round rewrites it; its upload is kept).
    Not waiting for the disk: the round's result, written next, does (`Journal._unsynced`)."""
    with journal._unsynced(), journal._tx() as db:
        db.execute(
            "INSERT INTO transcripts (server, run_id, rounds, jsonl, updated_at)"
            " VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (server, run_id) DO UPDATE SET"
            " rounds = excluded.rounds, jsonl = excluded.jsonl, updated_at = excluded.updated_at",
            (server, run_id, rounds, jsonl, journal._clock()),
        )


def note_upload(journal: Journal, server: str, run_id: int, outcome: str) -> None:
    """What became of the transcript's upload, as `history --run` shows it (not waiting
    for the disk: a power cut may lose the note, never the run's result)."""
    with journal._unsynced(), journal._tx() as db:
        db.execute(
            "UPDATE transcripts SET upload = ?, uploaded_at = ? WHERE server = ? AND run_id = ?",
            (outcome, journal._clock(), server, run_id),
        )


def kept(journal: Journal, server: str, run_id: int) -> Kept | None:
    row = journal._db.execute(
        "SELECT * FROM transcripts WHERE server = ? AND run_id = ?", (server, run_id)
    ).fetchone()
    return _kept(row) if row else None


def kept_for_run_id(journal: Journal, run_id: int) -> list[Kept]:
    """Every transcript kept for this run id, whatever server it came from."""
    rows = journal._db.execute("SELECT * FROM transcripts WHERE run_id = ?", (run_id,))
    return [_kept(row) for row in rows.fetchall()]


def _kept(row: Any) -> Kept:
    return Kept(**{key: row[key] for key in row.keys()})  # noqa: SIM118 - sqlite3.Row
