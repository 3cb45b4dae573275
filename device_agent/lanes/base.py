"""The lane interface: what differs between the kinds of run a server hands out.

A lane says how a claim's payload is read, how the CLI's prompt is built, where
and how the result is reported, and how the server's answer to that report is
read — including whether it asks for another round on the same run (the
automation lane's resume loop, docs/protocol.md, "Automation lane: exit report
and resume"). The pipeline (`device_agent.agent.pipeline`) does the rest, the same
for every lane. Adding a lane is one module and one entry in `lanes.LANES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from device_agent.agent.result import Report
from device_agent.executors.request import ExecutionRequest
from device_agent.lanes.routes import unhandled_failure
from device_agent.logs import get_logger
from device_agent.server.client import Answer
from device_agent.server.protocol import Claim, PayloadError

log = get_logger(__name__)


@dataclass(frozen=True)
class Done:
    """The server has what it needs: the run is over for us."""


@dataclass(frozen=True)
class Resume:
    """Run the CLI again on the same run, with `nudge` appended to the prompt, and report
    that round with `finalize_attempt=attempt`."""

    attempt: int
    nudge: str


@dataclass(frozen=True)
class Fail:
    """The answer asks for something this agent will not do (a round past its bounds):
    report the run as failed with `error` instead."""

    error: str


Verdict = Done | Resume | Fail


class LaneRun(Protocol):
    """A claimed run, read and checked by its lane."""

    @property
    def run_id(self) -> int: ...

    @property
    def item_id(self) -> str:
        """The watcher's or automation's id (journaled, and what "Run now" takes)."""

    @property
    def name(self) -> str:
        """What a user calls it, for status and history."""

    @property
    def agent_kind(self) -> str | None:
        """The executor profile it asks for; None means the device's default."""

    @property
    def execution_config(self) -> Mapping[str, Any]: ...

    @property
    def uses_device_tools(self) -> bool:
        """Whether the CLI gets the Lobu tools through the device's own credential (a loopback
        proxy holding it); False when the run brings a credential of its own."""

    @property
    def transcript_token(self) -> str | None:
        """The credential the run's transcript is uploaded with once its final report was
        acknowledged — its `agent_session` token (docs/protocol.md, "Transcript of an
        automation run"); None: the transcript stays on the device."""

    def prompt(self, nudge: str | None) -> str:
        """The CLI's prompt; `nudge` is the latest resume answer's, if any.
        Raises `PayloadError` when the run cannot be prompted."""

    def wire(self, request: ExecutionRequest, *, server: str) -> ExecutionRequest:
        """`request` with whatever this run's CLI gets besides the device's own wiring
        (another Lobu credential, extra flags); the request itself when nothing. `server`
        is the configured server's origin. Raises `PayloadError` when what the run brings
        cannot be used (the run then fails with that message)."""

    def review(self, report: Report) -> Report:
        """A round's result as this run's lane reads it, before it is journaled (a chat turn
        with an empty reply has failed); the report itself when the lane adds nothing."""


class Lane(Protocol):
    run_type: str
    # Whether a round's answer may ask for another round. Such a lane keeps its
    # concurrency slot until the server has answered; others free it as soon as the
    # CLI is done, so a slow server never holds up the next run.
    may_resume: bool

    def parse(self, claim: Claim) -> LaneRun:
        """Read the claim's payload. Raises `PayloadError` naming the bad field, nothing else."""

    def completion_route(self, run_id: int) -> str: ...

    def completion_body(
        self, report: Report, *, run_id: int, worker_id: str, attempt: int
    ) -> dict[str, Any]: ...

    def read_completion(self, answer: Answer, *, attempt: int) -> Verdict:
        """What an OK answer to the completion of round `attempt` means for the run."""

    def after_loss(self, report: Report) -> Report | None:
        """The server let go of the run (a heartbeat answered 409) while its CLI ran: the report
        still to send for it, or None to send nothing (docs/protocol.md, "Heartbeat")."""

    def trigger_route(self, item_id: str) -> str: ...


class UnhandledLane:
    """A run type this agent does not run: it is failed at once through its own lane's
    route, never left claimed (docs/protocol.md, "Runs the agent does not handle")."""

    may_resume = False

    def __init__(self, run_type: str) -> None:
        self.run_type = run_type

    def parse(self, claim: Claim) -> LaneRun:
        raise PayloadError(
            f"device-agent does not handle run_type={claim.run_type!r} (capabilities: none)"
        )

    def completion_route(self, run_id: int) -> str:
        return unhandled_failure(self.run_type, run_id, worker_id="", error="").route

    def completion_body(
        self, report: Report, *, run_id: int, worker_id: str, attempt: int
    ) -> dict[str, Any]:
        error = report.error or f"device-agent does not handle run_type={self.run_type!r}"
        return unhandled_failure(self.run_type, run_id, worker_id=worker_id, error=error).body

    def read_completion(self, answer: Answer, *, attempt: int) -> Verdict:
        return Done()

    def after_loss(self, report: Report) -> Report | None:
        return None

    def trigger_route(self, item_id: str) -> str:
        raise ValueError(f"there is no Run now for run_type={self.run_type!r}")


def read_claim(lane: Lane, claim: Claim) -> LaneRun | str:
    """The parsed run, or why it cannot be run. Never raises: a bad payload fails one run."""
    if claim.unreadable is not None:
        return claim.unreadable
    try:
        return lane.parse(claim)
    except PayloadError as exc:
        if isinstance(lane, UnhandledLane):
            log.error(
                "server sent a run type this agent does not handle; failing it",
                run_id=claim.run_id,
                run_type=claim.run_type,
            )
            return str(exc)
        return f"unusable run payload from the server: {exc}"
    except Exception as exc:  # a bug in a lane must fail this run, never the loop
        log.exception("reading a claim failed", run_id=claim.run_id)
        return f"unusable run payload from the server: {type(exc).__name__}: {exc}"
