"""A run's transcript after each round: kept in the journal with the run, and uploaded once.

The JSONL itself is built by `device_agent.executors.transcript`. Here:

- it is kept in the journal's `transcripts` table, one row per run, rewritten after each
  round, with what became of its upload. The row goes when its run goes: a trigger drops
  it with the run's row whatever prunes it, and a transcript whose run is gone is dropped
  when the journal is opened. So it is kept as long as the journal keeps the run, for
  every lane (`device-agent history --run N --transcript`);
- it is uploaded once, after the run's final report was acknowledged and only when the
  run has an `agent_session`, with that session's token — never the device token —
  (docs/protocol.md, "Transcript of an automation run"). An upload that fails is said in
  the log and in the journal, and changes nothing of the run's outcome.

The functions take the `Journal` and use its connection and transactions: the journal
has one writer thread, and `AsyncJournal.call`/`write_or_defer` run these on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from device_agent.agent.result import ExitReason, Report

if TYPE_CHECKING:
    from device_agent.agent.journal import Journal
    from device_agent.server.client import Answer, LobuClient

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

TERMINAL_STATUSES: Final = ("completed", "failed", "timeout", "cancelled")
UPLOAD_TRIES: Final = 3
UPLOAD_PAUSE_SECONDS: Final = 0.25  # between two tries, as the upstream daemon waits
UPLOADED: Final = "uploaded"


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
    """Keep the transcript of a run so far (every round rewrites it; its upload is kept)."""
    with journal._tx() as db:
        db.execute(
            "INSERT INTO transcripts (server, run_id, rounds, jsonl, updated_at)"
            " VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (server, run_id) DO UPDATE SET"
            " rounds = excluded.rounds, jsonl = excluded.jsonl, updated_at = excluded.updated_at",
            (server, run_id, rounds, jsonl, journal._clock()),
        )


def note_upload(journal: Journal, server: str, run_id: int, outcome: str) -> None:
    """What became of the transcript's upload, as `history --run` shows it."""
    with journal._tx() as db:
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


# ------------------------------------------------------------------ to the server


def terminal_status(answer: Any, report: Report) -> str:
    """The `terminalStatus` of a run whose final report got `answer` (its body): completed when
    the server said so; cancelled when it said so or the run was cancelled; timeout when the
    CLI timed out; else failed."""
    status = answer.get("status") if isinstance(answer, Mapping) else None
    if status == "completed":
        return "completed"
    if status == "cancelled" or report.exit_reason is ExitReason.CANCELLED:
        return "cancelled"
    if report.exit_reason is ExitReason.TIMEOUT:
        return "timeout"
    return "failed"


async def upload(
    client: LobuClient,
    *,
    run_id: int,
    terminal_status: str,
    jsonl: str,
    session_token: str,
    pause: float = UPLOAD_PAUSE_SECONDS,
) -> Answer:
    """Send the transcript, up to 3 tries `pause` apart; an answer that says no (401, 400,
    409, 413) is not tried again. Returns the last answer."""
    from device_agent.server.client import AnswerKind  # the journal imports this module

    answer = await client.transcript_snapshot(
        run_id=run_id, terminal_status=terminal_status, jsonl=jsonl, session_token=session_token
    )
    for _ in range(UPLOAD_TRIES - 1):
        if answer.kind is not AnswerKind.TRANSIENT:
            break
        await asyncio.sleep(pause)
        answer = await client.transcript_snapshot(
            run_id=run_id,
            terminal_status=terminal_status,
            jsonl=jsonl,
            session_token=session_token,
        )
    return answer


def outcome_of(answer: Answer, terminal_status: str) -> str:
    """The upload's outcome in words, for the journal and `history --run`."""
    if answer.ok:
        ident = answer.body.get("id") if isinstance(answer.body, Mapping) else None
        stored = f", stored as {ident}" if ident is not None else ""
        return f"{UPLOADED} ({terminal_status}{stored})"
    return f"upload failed: {answer.describe()}"
