"""Chat turns shaped like a current Lobu server's poll answer (protocol §10.9)."""

from __future__ import annotations

from typing import Any

from device_agent.server.protocol import Claim
from tests.support.claims import DELETE, changed, claim_of

__all__ = ["ANSWER", "DELETE", "MCP_URL", "SESSION_TOKEN", "answer", "claim"]

SESSION_TOKEN = "owl_ses_SessionTokenForThisTurnOnly0001"
MCP_URL = "http://127.0.0.1:8787/mcp/acme"

ANSWER: dict[str, Any] = {
    "run_id": 901,
    "run_type": "chat_message",
    "organization_id": "org_1",
    "payload": {
        "chat": {
            "agent_kind": "claude-code",
            "execution_config": {"timeout_seconds": 120, "model": "sonnet"},
            "message": "What changed today?",
            "ephemeral_context": "Atlas has one urgent review.",
            "history": [
                {"role": "user", "content": "Remember project Atlas."},
                {"role": "assistant", "content": "I will."},
            ],
            "agent": {
                "id": "agent-1",
                "name": "Researcher",
                "identity_md": "You are a careful researcher.",
                "soul_md": "Prefer evidence.",
                "user_md": "The user owns Atlas.",
            },
        },
        "context": {
            "device": {"worker_id": "5d0c6f8e-8c1e-4a52-9d1e-0f3f7c1b2a10"},
            "user": {"user_id": "user-1"},
            "agent_session": {
                "conversation_id": "conv-1",
                "mcp_url": MCP_URL,
                "token": SESSION_TOKEN,
                "expires_at": 1796022000000,
            },
        },
    },
}


def answer(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ANSWER with fields changed (`tests.support.claims.changed`): "chat.message"
    is payload.chat.message; the value DELETE removes the field."""
    return changed(ANSWER, changes)


def claim(changes: dict[str, Any] | None = None) -> Claim:
    return claim_of(answer(changes))
