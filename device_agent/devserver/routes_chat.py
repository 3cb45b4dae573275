"""Device chats of current Lobu servers: the claim gate of a turn, its claim, and
`complete-chat`.

See docs/protocol.md, "Chat lane". Check order, status codes and texts follow
lobu-ai/lobu `packages/server/src/worker-api/device-chat.ts`
(`completeDeviceChatRun`) and the contract `CompleteDeviceChatRequestSchema`.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from device_agent.devserver.access import agent_session, authorize_run, check_device_binding
from device_agent.devserver.http import Request, Response
from device_agent.devserver.state import ConversationRecord, DevState, RunRecord
from device_agent.devserver.wire import INVALID_BODY, Caller, error, json_object, path_id

MAX_REPLY_BYTES: Final = 512 * 1024
TRUNCATED_BY_SERVER: Final = "\n\n[Reply truncated by Lobu]"
NO_REPLY: Final = "Device agent returned no reply"
OUTPUT_TAIL_CHARS: Final = 2000
EXIT_REASONS: Final = ("ok", "cancelled", "error_message", "timeout", "oom", "crash")


def may_claim(state: DevState, run: RunRecord, kinds: object) -> bool:
    """A turn goes only to a device that lists the conversation's `agent_kind`, one turn per
    conversation at a time, oldest first (the caller holds the lock)."""
    conversation = state.find_conversation(run.conversation_id)
    if conversation is None or not isinstance(kinds, list):
        return False
    if conversation.agent_kind not in kinds:
        return False
    turn = state.next_turn_of(conversation.id)
    return turn is not None and turn.id == run.id


def claim_payload(state: DevState, run: RunRecord) -> dict[str, Any]:
    """`payload` of a claimed turn: `{chat: {...}, context: {...}}`."""
    conversation = state.find_conversation(run.conversation_id)
    if conversation is None:  # conversations are never deleted: a dev-server bug
        raise LookupError(f"chat turn {run.id} has no conversation")
    chat: dict[str, Any] = {
        "agent_kind": conversation.agent_kind,
        "message": run.approved_input.get("message", ""),
        "history": state.history_for(conversation),
        "agent": _agent(conversation),
    }
    if conversation.execution_config:
        chat["execution_config"] = copy.deepcopy(conversation.execution_config)
    ephemeral = run.approved_input.get("ephemeral_context")
    if isinstance(ephemeral, str) and ephemeral:
        chat["ephemeral_context"] = ephemeral
    return {
        "chat": chat,
        "context": {
            "device": {"worker_id": run.device_id},
            "user": {"user_id": state.user.id},
            "agent_session": agent_session(state, run, conversation.id),
        },
    }


def _agent(conversation: ConversationRecord) -> dict[str, str]:
    agent = {"id": conversation.agent_id}
    layers = {
        "name": conversation.agent_name,
        "identity_md": conversation.identity_md,
        "soul_md": conversation.soul_md,
        "user_md": conversation.user_md,
    }
    return agent | {key: value for key, value in layers.items() if value is not None}


# ============================================================ complete-chat


def complete_chat(
    state: DevState, caller: Caller, request: Request, *, run_id_text: str
) -> Response:
    run_id = path_id(run_id_text, "Invalid runId")
    if isinstance(run_id, Response):
        return run_id
    body = json_object(request)
    if body is None:
        return error(400, INVALID_BODY)
    if not _valid_report(body):
        return error(400, "Invalid device chat completion body")
    worker_id = body["worker_id"]
    denied = authorize_run(state, caller, run_id, worker_id, terminal_ok=True)
    if denied is not None:
        return denied
    run = state.find_run(run_id)
    if run is None or run.run_type != "chat_message":
        return error(404, "Device chat run not found")
    if run.claimed_by != worker_id or run.status != "running":
        status = "completed" if run.status == "completed" else "failed"
        return Response.json(200, {"ok": True, "status": status, "idempotent": True})
    if run.device_id is None:
        return error(409, "Run is not device-placed")
    denied = check_device_binding(state, caller, run, worker_id)
    if denied is not None:
        return denied
    output = body.get("output")
    reply = bounded_reply(output.replace("\x00", "").strip()) if isinstance(output, str) else ""
    said = body.get("error")
    failure = said.replace("\x00", "").strip() if isinstance(said, str) else ""
    failure = failure or ("" if reply else NO_REPLY)
    _finish(state, run, body, reply, failure)
    return Response.json(200, {"ok": True, "status": run.status})


def _finish(
    state: DevState, run: RunRecord, body: dict[str, Any], reply: str, failure: str
) -> None:
    run.status = "failed" if failure else "completed"
    run.error = failure or None
    run.output = reply[-OUTPUT_TAIL_CHARS:] or None
    run.completed_at = state.now()
    run.completions_committed += 1
    code = body.get("exit_code")
    run.exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
    signal = body.get("exit_signal")
    run.exit_signal = signal if isinstance(signal, str) else None
    run.exit_reason = body.get("exit_reason") or ("error_message" if failure else "ok")
    conversation = state.find_conversation(run.conversation_id)
    if conversation is not None and not failure:
        # The exchange becomes the next turn's history; a failed turn adds nothing.
        message = run.approved_input.get("message", "")
        conversation.history += [
            {"role": "user", "content": str(message)},
            {"role": "assistant", "content": reply},
        ]


def _valid_report(body: dict[str, Any]) -> bool:
    """`CompleteDeviceChatRequestSchema`: worker_id, and optional output, error, exit_*."""
    code = body.get("exit_code")
    return (
        isinstance(body.get("worker_id"), str)
        and _optional(body, "output", str, nullable=False)
        and _optional(body, "error", str)
        and (code is None or (isinstance(code, int) and not isinstance(code, bool)))
        and _optional(body, "exit_signal", str)
        and ("exit_reason" not in body or body["exit_reason"] in EXIT_REASONS)
    )


def _optional(body: dict[str, Any], key: str, kind: type, *, nullable: bool = True) -> bool:
    if key not in body:
        return True
    value = body[key]
    return isinstance(value, kind) or (nullable and value is None)


def bounded_reply(reply: str) -> str:
    """At most 512 KiB of UTF-8, cut where a character begins, with the server's note."""
    data = reply.encode("utf-8", errors="replace")
    if len(data) <= MAX_REPLY_BYTES:
        return reply
    return data[:MAX_REPLY_BYTES].decode("utf-8", errors="ignore") + TRUNCATED_BY_SERVER
