"""Automation claims shaped like a current Lobu server's poll answer (protocol §10.2)."""

from __future__ import annotations

import copy
from typing import Any

from device_agent.server.protocol import Claim, parse_poll

SESSION_TOKEN = "owl_pat_SessionTokenForThisRunOnly000001"
MCP_URL = "http://127.0.0.1:8787/mcp/acme"

APPROVED_INPUT: dict[str, Any] = {
    "agent_id": "agent_7",
    "window_start": "2026-11-29T00:00:00.000Z",
    "window_end": "2026-11-30T00:00:00.000Z",
    "dispatch_source": "scheduled",
    "version_id": 3,
    "device_worker_id": "5d0c6f8e-8c1e-4a52-9d1e-0f3f7c1b2a10",
    "agent_kind": "claude-code",
    "finalize_nudge_count": 0,
}

ANSWER: dict[str, Any] = {
    "run_id": 812,
    "run_type": "automation",
    "organization_id": "org_1",
    "payload": {
        "automation": {
            "id": "42",
            "name": "Inbox triage",
            "slug": "inbox-triage",
            "agent_kind": "claude-code",
            "execution_config": {"timeout_seconds": 900, "model": "sonnet"},
            "prompt": "  Sort the new mail.\n",
            "extraction_schema": None,
        },
        "event": {
            "trigger_event_id": None,
            "fired_at": "2026-11-30T07:00:00.000Z",
            "payload": APPROVED_INPUT,
        },
        "context": {
            "device": {"worker_id": "5d0c6f8e-8c1e-4a52-9d1e-0f3f7c1b2a10"},
            "user": {"user_id": "user_9"},
            "agent_session": {
                "conversation_id": "conv_1",
                "mcp_url": MCP_URL,
                "token": SESSION_TOKEN,
                "expires_at": "2026-11-30T09:00:00.000Z",
            },
        },
    },
}


DELETE: Any = object()


def answer(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ANSWER with fields changed: "automation.name" is payload.automation.name,
    "run_id" and "payload" are top-level; the value DELETE removes the field."""
    body = copy.deepcopy(ANSWER)
    for dotted, value in (changes or {}).items():
        target = body if dotted in ("run_id", "payload") else body["payload"]
        *parents, key = dotted.split(".")
        for parent in parents:
            target = target[parent]
        if value is DELETE:
            del target[key]
        else:
            target[key] = value
    return body


def claim(changes: dict[str, Any] | None = None) -> Claim:
    parsed = parse_poll(answer(changes))
    assert isinstance(parsed, Claim)
    return parsed
