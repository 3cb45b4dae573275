"""The exit report of an automation round and the server's answer to it.

docs/protocol.md, "Automation lane: exit report and resume": the device
reports how the CLI exited; the server decides success (only a CLI that
called `completeWindow` itself succeeds) and may answer `resume`: run the CLI
again on the same run with a nudge. `read_answer` turns that answer into a
`Decision`, enforcing the local bounds so a server can never keep the device
in an endless resume loop. `exit_report_body` builds what is posted.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from device_agent.agent.result import Report as ExecutionResult
from device_agent.server.protocol import PayloadError, preview
from device_agent.textsafe import storable

MAX_ROUNDS: typing.Final = 8  # rounds 0..7, like the upstream daemon's LOCAL_MAX_ROUNDS
OUTPUT_TAIL_CHARS: typing.Final = 2000  # the server keeps only this much of `output`
ERROR_TAIL_CHARS: typing.Final = 500
DEFAULT_NUDGE: typing.Final = (
    "Prior attempt did not call completeWindow. Finalize via lobu CLI or MCP."
)

StopCause = Literal["heartbeat_409", "shutdown"]


@dataclass(frozen=True)
class Completed:
    reason_code: str | None = None  # "event_turn" for an event turn
    idempotent: bool = False


@dataclass(frozen=True)
class Failed:
    error: str | None
    reason_code: str | None = None
    idempotent: bool = False


@dataclass(frozen=True)
class Cancelled:
    reason_code: str | None = None
    idempotent: bool = False


@dataclass(frozen=True)
class Final:
    """Any other terminal status (`timeout`, a status this agent does not know): done."""

    status: str
    idempotent: bool = False


@dataclass(frozen=True)
class Resume:
    """Run the CLI again on the same run, with `nudge` appended, and report `attempt`."""

    attempt: int
    max_attempts: int | None
    nudge: str
    error: str | None = None
    idempotent: bool = False


@dataclass(frozen=True)
class GiveUp:
    """The server asked for a round this agent will not run; report `error` as a failure."""

    error: str


Decision = Completed | Failed | Cancelled | Final | Resume | GiveUp


def read_answer(body: Any, *, finalize_attempt: int) -> Decision:
    """Read a 200 answer to the report sent with `finalize_attempt`.

    Raises `PayloadError` when the answer has no usable `status`: the report
    was delivered, but what the server decided is unknown.
    """
    if not isinstance(body, Mapping):
        raise PayloadError(f"complete-automation answer is not a JSON object: {preview(body)}")
    status = body.get("status")
    if not isinstance(status, str) or not status:
        raise PayloadError(f"complete-automation answer has no status: {preview(body)}")
    idempotent = body.get("idempotent") is True
    reason = _string(body.get("reason_code"))
    if status == "completed":
        return Completed(reason_code=reason, idempotent=idempotent)
    if status == "failed":
        return Failed(error=_string(body.get("error")), reason_code=reason, idempotent=idempotent)
    if status == "cancelled":
        return Cancelled(reason_code=reason, idempotent=idempotent)
    if status == "resume":
        return _resume(body, finalize_attempt=finalize_attempt, idempotent=idempotent)
    return Final(status=status, idempotent=idempotent)


def _resume(body: Mapping[str, Any], *, finalize_attempt: int, idempotent: bool) -> Decision:
    attempt = body.get("attempt", finalize_attempt + 1)
    if not isinstance(attempt, int) or isinstance(attempt, bool):
        return GiveUp(f"the server asked for a resume round without a usable attempt: {attempt!r}")
    max_attempts = body.get("max_attempts")
    if not isinstance(max_attempts, int) or isinstance(max_attempts, bool):
        max_attempts = None
    # Each bound ends the loop: a round number that does not move forward
    # would repeat a round, and past the caps it would never end.
    if attempt <= finalize_attempt:
        return GiveUp(
            f"the server asked again for resume round {attempt} after round {finalize_attempt}; "
            "stopping so that no round runs twice"
        )
    if attempt >= MAX_ROUNDS:
        return GiveUp(f"device finalize resume loop exceeded local safety cap ({MAX_ROUNDS})")
    if max_attempts is not None and attempt > max_attempts:
        return GiveUp(
            f"the server asked for resume round {attempt} beyond its own max_attempts "
            f"({max_attempts})"
        )
    error = _string(body.get("error"))
    nudge = body.get("nudge")
    # Like the upstream daemon: the nudge, else the error, else a stock nudge.
    text = nudge if isinstance(nudge, str) else error if error is not None else DEFAULT_NUDGE
    return Resume(
        attempt=attempt,
        max_attempts=max_attempts,
        nudge=text,
        error=error,
        idempotent=idempotent,
    )


def _string(value: object) -> str | None:
    return value if isinstance(value, str) else None


# ------------------------------------------------------------ exit report


def exit_report_body(
    result: ExecutionResult,
    *,
    worker_id: str,
    finalize_attempt: int,
    stopped: StopCause | None = None,
    stop_signal: str | None = None,
) -> dict[str, Any]:
    """The body of `POST /api/workers/me/runs/:runId/complete-automation` for one round.

    `stopped` says why the agent stopped the CLI, if it did: after a heartbeat
    409 (`stop_signal` = the signal used; a CLI that exited by itself within
    the grace is reported with its real exit instead, `stopped=None`) or for
    the agent's shutdown.
    """
    exit_code, exit_signal = result.exit_code, result.exit_signal
    error: str | None = None
    if stopped == "heartbeat_409":
        # The server already owns the outcome; this report only records the
        # exit, and must not read as a failure or a cancel.
        reason, exit_code, exit_signal = "ok", None, stop_signal or exit_signal
    elif stopped == "shutdown":
        reason, exit_signal = "cancelled", stop_signal or exit_signal
    else:
        reason = result.exit_reason
        if reason != "ok" or result.error:
            error = _tail(result.error or f"the CLI ended with {reason}", ERROR_TAIL_CHARS)
    body: dict[str, Any] = {
        "worker_id": worker_id,
        "error": error,
        "duration_ms": max(0, int(result.duration_ms)),
        "exit_code": exit_code,
        "exit_signal": exit_signal,
        "exit_reason": reason,
        "finalize_attempt": finalize_attempt,
    }
    if result.output:
        body["output"] = _tail(result.output, OUTPUT_TAIL_CHARS)
    return body


def local_failure_body(
    error: str, *, worker_id: str, finalize_attempt: int, exit_reason: str = "error_message"
) -> dict[str, Any]:
    """A report for a round that never ran a CLI (bad payload, no binary, resume refused)."""
    return {
        "worker_id": worker_id,
        "error": _tail(error, ERROR_TAIL_CHARS),
        "duration_ms": 0,
        "exit_code": None,
        "exit_signal": None,
        "exit_reason": exit_reason,
        "finalize_attempt": finalize_attempt,
    }


def interrupted_round_body(*, worker_id: str, finalize_attempt: int) -> dict[str, Any]:
    """The report for a round the journal shows started but never reported (agent restart).

    The round is not run again: its CLI may have done half the work, or even
    completed the window; the server decides from this crash report.
    """
    return local_failure_body(
        f"the device agent stopped while round {finalize_attempt} of this run was running "
        "(crash or restart); the round was not run again",
        worker_id=worker_id,
        finalize_attempt=finalize_attempt,
        exit_reason="crash",
    )


def _tail(text: str, limit: int) -> str:
    # Replace first, then cut: a cut never splits anything once surrogates are gone.
    return storable(text)[-limit:]
