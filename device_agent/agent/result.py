"""A run's result: the one type carried from the executor through the journal to the outbox.

Each lane turns it into its own completion body (docs/protocol.md,
"Watcher lane: completion"); `details` (cost, turns, argv, byte counts) stay
on the device, in the journal.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from device_agent.executors.transcript import Round

TRUNCATED: Final = "[output truncated]"  # ends an output cut at its cap


class ExitReason(enum.StrEnum):
    OK = "ok"
    ERROR_MESSAGE = "error_message"
    TIMEOUT = "timeout"
    OOM = "oom"  # accepted by the server; never sent: nothing portable tells it from a crash
    CRASH = "crash"
    CANCELLED = "cancelled"

    @classmethod
    def read(cls, value: str | None, *, failed: bool) -> ExitReason:
        """A stored value back as a reason; one we no longer know becomes the generic one."""
        try:
            return cls(value or "")
        except ValueError:
            return cls.ERROR_MESSAGE if failed else cls.OK


@dataclass(frozen=True)
class Report:
    """What a run produced, and what we tell the server about it."""

    output: str
    error: str | None
    duration_ms: int
    exit_code: int | None
    exit_signal: str | None
    exit_reason: ExitReason
    details: Mapping[str, Any] = field(default_factory=dict)
    # What the CLI did this round, for the run's transcript (device_agent/executors/transcript.py);
    # kept apart from the journal's row of the run, and never part of a report sent.
    transcript: Round | None = field(default=None, compare=False, repr=False)

    @property
    def failed(self) -> bool:
        return bool(self.error)

    def failing(self, error: str, exit_reason: ExitReason = ExitReason.ERROR_MESSAGE) -> Report:
        """This result with another error; output, timings and details are kept."""
        return dataclasses.replace(self, error=error, exit_reason=exit_reason)


def failure(
    error: str,
    *,
    exit_reason: ExitReason = ExitReason.ERROR_MESSAGE,
    duration_ms: int = 0,
) -> Report:
    """A run that produced nothing but an error (it could not start, or was never run)."""
    return Report(
        output="",
        error=error,
        duration_ms=duration_ms,
        exit_code=None,
        exit_signal=None,
        exit_reason=exit_reason,
    )
