"""Transcripts devices uploaded for their automation runs (docs/protocol.md, "Transcript of an
automation run"): the latest snapshot of each run, which the web app would show."""

from __future__ import annotations

import copy

from device_agent.devserver.state.core import StateCore
from device_agent.devserver.state.records import TranscriptRecord


class Transcripts(StateCore):
    """One transcript per run: each snapshot accepted replaces the one before, which it
    extends (the route refuses one that does not)."""

    def transcript(self, run_id: int) -> TranscriptRecord | None:
        with self.lock:
            record = self._transcripts.get(run_id)
            return copy.deepcopy(record) if record else None

    def transcripts(self) -> list[TranscriptRecord]:
        with self.lock:
            return [copy.deepcopy(t) for t in self._transcripts.values()]

    def store_transcript(self, run_id: int, terminal_status: str, snapshot_jsonl: str) -> int:
        """Keep a snapshot for `run_id` (tests seed one this way too); returns its id."""
        with self.lock:
            before = self._transcripts.get(run_id)
            record = TranscriptRecord(
                id=before.id if before else len(self._transcripts) + 1,
                run_id=run_id,
                terminal_status=terminal_status,
                snapshot_jsonl=snapshot_jsonl,
                byte_size=len(snapshot_jsonl.encode("utf-8")),
                received_at=self.clock(),
                uploads=before.uploads + 1 if before else 1,
            )
            self._transcripts[run_id] = record
            return record.id
