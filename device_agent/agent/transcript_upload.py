"""The upload of a run's transcript, once, after its final report.

It is sent after the run's final report was acknowledged and only when the run has an
`agent_session`, with that session's token — never the device token — (docs/protocol.md,
"Transcript of an automation run"). An upload that fails is said in the log and in the
journal (`device_agent.agent.transcripts.note_upload`), and changes nothing of the run's
outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

from device_agent.agent.result import ExitReason, Report
from device_agent.agent.transcripts import UPLOADED
from device_agent.server.client import Answer, AnswerKind, LobuClient

TERMINAL_STATUSES: Final = ("completed", "failed", "timeout", "cancelled")
UPLOAD_TRIES: Final = 3
UPLOAD_PAUSE_SECONDS: Final = 0.25  # between two tries, as the upstream daemon waits


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
