"""The chat lane: one turn of a conversation pinned to this device, reported to `complete-chat`.

A person writes in a Lobu conversation (web chat, Slack) whose execution
target is this device; the server hands each message over as a
`chat_message` run, the device's CLI answers it once, and the server posts
the reply into the conversation (docs/protocol.md, "Chat lane"). The CLI runs
as an automation run's does — same profiles, the run's own `agent_session` as
its only Lobu credential (`automation.access`), the same process control,
caps, heartbeat and `execution_config.timeout_seconds` — and a turn is never
resumed: its report ends it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from device_agent.agent.result import ExitReason, Report
from device_agent.executors.request import ExecutionRequest
from device_agent.lanes.automation.access import session_access
from device_agent.lanes.base import Done, Verdict
from device_agent.lanes.chat.payload import ChatTurn, parse_chat_turn
from device_agent.lanes.chat.prompt import build_chat_prompt
from device_agent.lanes.routes import CHAT_COMPLETION_ROUTE
from device_agent.logs import get_logger
from device_agent.server.client import Answer
from device_agent.server.protocol import Claim
from device_agent.textsafe import storable

log = get_logger(__name__)

RUN_TYPE: Final = "chat_message"
# The server keeps at most 512 KiB of a reply (and cuts a longer one itself); the agent sends
# no more than that, cut where a character begins, with a note saying so.
MAX_REPLY_BYTES: Final = 512 * 1024
TRUNCATED_REPLY: Final = "\n\n[Reply truncated by device-agent]"
ERROR_TAIL_CHARS: Final = 2000  # the server shows the error in the conversation
TITLE_CHARS: Final = 48  # of the conversation's first words, in `status` and `history`
# A report's detail saying the agent stopped the CLI because a heartbeat answered 409; journaled
# with the report, so the report sent again after a restart says the same.
STOPPED_BY: Final = "stopped_by"
HEARTBEAT_409: Final = "heartbeat_409"
STOPPED_BY_SERVER: Final = (
    "cancelled: the server ended this chat turn while the CLI was answering (the turn was "
    "cancelled, timed out or answered elsewhere); device-agent stopped the CLI"
)
ANSWER_STATUSES: Final = ("completed", "failed")


def empty_reply_error(agent_kind: str) -> str:
    return (
        f"{agent_kind} returned no reply: the CLI exited cleanly but printed an empty answer, "
        "so there is nothing to post to the conversation"
    )


@dataclass(frozen=True)
class ChatClaim:
    """A chat turn as the pipeline sees it."""

    turn: ChatTurn

    @property
    def run_id(self) -> int:
        return self.turn.run_id

    @property
    def item_id(self) -> str:
        """The conversation's id when the server names it, else the agent's."""
        return self.turn.conversation_id or f"agent:{self.turn.agent.id}"

    @property
    def name(self) -> str:
        return conversation_title(self.turn)

    @property
    def agent_kind(self) -> str:
        return self.turn.agent_kind

    @property
    def execution_config(self) -> Mapping[str, Any]:
        return self.turn.execution_config

    @property
    def uses_device_tools(self) -> bool:
        return self.turn.context.agent_session is None  # else `wire` gives the turn's own

    @property
    def transcript_token(self) -> str | None:
        return None  # the server keeps the conversation itself; the device keeps the rest

    def prompt(self, nudge: str | None) -> str:
        return build_chat_prompt(self.turn)  # a turn has one round: there is never a nudge

    def wire(self, request: ExecutionRequest, *, server: str) -> ExecutionRequest:
        """Wired as an automation run is: the turn's own `agent_session`, when it has one, is
        the only Lobu credential the CLI gets. Raises `PayloadError` when its `mcp_url` is
        not one the session token may be sent to."""
        access = session_access(
            self.turn.context.agent_session, device_mcp=request.mcp, server=server
        )
        return access.wired(request)

    def review(self, report: Report) -> Report:
        """A clean exit with nothing to say is no reply: the turn fails, and says why."""
        if report.error or report.exit_reason is not ExitReason.OK or report.output.strip():
            return report
        return report.failing(empty_reply_error(self.turn.agent_kind))


def conversation_title(turn: ChatTurn) -> str:
    """`chat: <first words>` of the oldest message the server sent with the turn — the
    conversation's opening line while it is short — else of the message itself."""
    first = next((entry.content for entry in turn.history if entry.role == "user"), turn.message)
    words = " ".join(first.split())
    if len(words) > TITLE_CHARS:
        cut = words[: TITLE_CHARS - 1]
        words = (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"
    return f"chat: {words or '(empty message)'}"


class ChatLane:
    run_type = RUN_TYPE
    may_resume = False

    def parse(self, claim: Claim) -> ChatClaim:
        return ChatClaim(parse_chat_turn(claim))

    def completion_route(self, run_id: int) -> str:
        return CHAT_COMPLETION_ROUTE.format(run_id=run_id)

    def completion_body(
        self, report: Report, *, run_id: int, worker_id: str, attempt: int
    ) -> dict[str, Any]:
        """`{worker_id, output, error, exit_code, exit_signal, exit_reason}`: `error` is null
        exactly when the turn has a reply to post. Built from the journaled report only, so
        every retry sends the same body."""
        reason = report.exit_reason
        error = report.error
        if not error and reason is not ExitReason.OK:
            error = f"the CLI ended with {reason}"
        return {
            "worker_id": worker_id,
            "output": bounded_reply(report.output),
            "error": storable(error)[-ERROR_TAIL_CHARS:] if error else None,
            "exit_code": report.exit_code,
            "exit_signal": report.exit_signal,
            "exit_reason": str(reason),
        }

    def read_completion(self, answer: Answer, *, attempt: int) -> Verdict:
        """`{ok, status: "completed"|"failed", idempotent?}`: either way the turn is over. The
        server decides failure on its side too (an empty reply once it strips NULs)."""
        body = answer.body if isinstance(answer.body, Mapping) else {}
        status = body.get("status")
        if status not in ANSWER_STATUSES:
            log.warning("the server's answer to a chat report is not one it documents", body=body)
        return Done()

    def after_loss(self, report: Report) -> Report | None:
        """A heartbeat answered 409 while the CLI ran: the report is still sent, saying the turn
        was cancelled (the server answers it harmlessly, and records the exit). A CLI that
        exited by itself meanwhile is reported as it ended."""
        if report.exit_reason is not ExitReason.CANCELLED:
            return report
        return dataclasses.replace(
            report.failing(STOPPED_BY_SERVER, ExitReason.CANCELLED),
            details={**report.details, STOPPED_BY: HEARTBEAT_409},
        )

    def trigger_route(self, item_id: str) -> str:
        raise ValueError("there is no Run now for a chat turn: a person starts one by writing")


def bounded_reply(output: str) -> str:
    """The reply as the server can store it: trimmed, NUL and lone surrogates replaced, at
    most `MAX_REPLY_BYTES` of UTF-8."""
    reply = storable(output).strip()
    data = reply.encode("utf-8")
    if len(data) <= MAX_REPLY_BYTES:
        return reply
    room = MAX_REPLY_BYTES - len(TRUNCATED_REPLY.encode("utf-8"))
    return data[:room].decode("utf-8", errors="ignore") + TRUNCATED_REPLY


CHAT = ChatLane()
