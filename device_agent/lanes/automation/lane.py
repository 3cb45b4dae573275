"""The automation lane: runs of current Lobu servers, reported to `complete-automation`.

The device reports how each CLI round exited; the server decides success and
may answer "resume": another round on the same run, with a nudge appended to
the prompt (docs/protocol.md, "Automation lane" and "Automation lane: exit
report and resume"). The pieces — payload, prompt, access, answers — live in
`device_agent.lanes.automation`; this module puts them behind the `Lane` interface.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from device_agent.agent.result import ExitReason, Report
from device_agent.executors.request import ExecutionRequest
from device_agent.lanes.automation import answers
from device_agent.lanes.automation.access import run_access
from device_agent.lanes.automation.payload import AutomationRun, parse_automation_run
from device_agent.lanes.automation.prompt import build_automation_prompt
from device_agent.lanes.base import Done, Fail, Resume, Verdict
from device_agent.lanes.routes import AUTOMATION_COMPLETION_ROUTE, trigger_route
from device_agent.logs import get_logger
from device_agent.server.client import Answer
from device_agent.server.protocol import Claim, PayloadError

log = get_logger(__name__)

# A report's detail saying the agent stopped the CLI because a heartbeat answered 409. It is
# journaled with the report, so a report sent after a restart still says so.
STOPPED_BY: Final = "stopped_by"
HEARTBEAT_409: Final = "heartbeat_409"


@dataclass(frozen=True)
class AutomationClaim:
    """An automation run as the pipeline sees it."""

    run: AutomationRun

    @property
    def run_id(self) -> int:
        return self.run.run_id

    @property
    def item_id(self) -> str:
        return self.run.automation.id

    @property
    def name(self) -> str:
        return self.run.automation.display_name

    @property
    def agent_kind(self) -> str | None:
        return self.run.agent_kind

    @property
    def execution_config(self) -> Mapping[str, Any]:
        return self.run.automation.execution_config

    @property
    def uses_device_tools(self) -> bool:
        return self.run.context.agent_session is None  # else `wire` gives the run's own

    @property
    def transcript_token(self) -> str | None:
        session = self.run.context.agent_session
        return session.token if session is not None else None

    def prompt(self, nudge: str | None) -> str:
        return build_automation_prompt(self.run, nudge=nudge)

    def wire(self, request: ExecutionRequest, *, server: str) -> ExecutionRequest:
        """The run's own `agent_session`, when it has one, replaces the device's credential:
        it is then the only Lobu credential the CLI gets (which tools a CLI may call is its
        profile's `[mcp]` business, the same in every lane). Raises `PayloadError` when its
        `mcp_url` is not one the session token may be sent to."""
        return run_access(self.run, device_mcp=request.mcp, server=server).wired(request)

    def review(self, report: Report) -> Report:
        return report  # the server decides what the round's exit means


class AutomationLane:
    run_type = "automation"
    may_resume = True

    def parse(self, claim: Claim) -> AutomationClaim:
        return AutomationClaim(parse_automation_run(claim))

    def completion_route(self, run_id: int) -> str:
        return AUTOMATION_COMPLETION_ROUTE.format(run_id=run_id)

    def completion_body(
        self, report: Report, *, run_id: int, worker_id: str, attempt: int
    ) -> dict[str, Any]:
        stopped: answers.StopCause | None = None
        if report.details.get(STOPPED_BY) == HEARTBEAT_409:
            stopped = "heartbeat_409"
        elif report.exit_reason is ExitReason.CANCELLED:
            stopped = "shutdown"
        return answers.exit_report_body(
            report,
            worker_id=worker_id,
            finalize_attempt=attempt,
            stopped=stopped,
            stop_signal=report.exit_signal,
        )

    def read_completion(self, answer: Answer, *, attempt: int) -> Verdict:
        try:
            decision = answers.read_answer(answer.body, finalize_attempt=attempt)
        except PayloadError as exc:
            # The report was delivered; what the server made of it is unknown. Nothing we
            # could send again would change that.
            log.warning("the server's answer to an exit report is unreadable", error=str(exc))
            return Done()
        if isinstance(decision, answers.Resume):
            return Resume(attempt=decision.attempt, nudge=decision.nudge)
        if isinstance(decision, answers.GiveUp):
            return Fail(decision.error)
        return Done()

    def after_loss(self, report: Report) -> Report | None:
        """The exit report is still sent after a heartbeat 409, as `exit_reason: "ok"` with the
        signal used (docs/protocol.md, "Automation lane: exit report and resume")."""
        if report.exit_reason is not ExitReason.CANCELLED:
            return report  # the CLI had exited by itself: its real exit
        return dataclasses.replace(report, details={**report.details, STOPPED_BY: HEARTBEAT_409})

    def trigger_route(self, item_id: str) -> str:
        return trigger_route(self.run_type, item_id)


AUTOMATION = AutomationLane()
