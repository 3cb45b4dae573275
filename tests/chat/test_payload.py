"""Parsing a claimed chat turn: what real servers send is accepted, the unusable refused with
the field named, the oversized refused whole."""

from __future__ import annotations

import re
from typing import Any

import pytest

from device_agent.lanes.automation.payload import AgentSession
from device_agent.lanes.chat.payload import (
    MAX_HISTORY_ENTRIES,
    MAX_MESSAGE_CHARS,
    ChatAgent,
    ChatEntry,
    parse_chat_turn,
)
from device_agent.server.protocol import PayloadError
from device_agent.textsafe import REPLACEMENT

from .claims import DELETE, MCP_URL, SESSION_TOKEN, claim


def test_a_full_turn_is_read_into_typed_views() -> None:
    turn = parse_chat_turn(claim())
    assert turn.run_id == 901
    assert turn.organization_id == "org_1"
    assert turn.agent_kind == "claude-code"
    assert turn.message == "What changed today?"
    assert turn.ephemeral_context == "Atlas has one urgent review."
    assert turn.history == (
        ChatEntry("user", "Remember project Atlas."),
        ChatEntry("assistant", "I will."),
    )
    assert turn.agent == ChatAgent(
        id="agent-1",
        name="Researcher",
        identity_md="You are a careful researcher.",
        soul_md="Prefer evidence.",
        user_md="The user owns Atlas.",
    )
    assert turn.execution_config == {"timeout_seconds": 120, "model": "sonnet"}
    assert turn.context.device_worker_id == "5d0c6f8e-8c1e-4a52-9d1e-0f3f7c1b2a10"
    assert turn.context.agent_session == AgentSession(
        mcp_url=MCP_URL, token=SESSION_TOKEN, conversation_id="conv-1", expires_at=1796022000000
    )
    assert turn.conversation_id == "conv-1"
    assert turn.secrets == (SESSION_TOKEN,)


def test_a_first_turn_with_only_what_is_required_is_accepted() -> None:
    turn = parse_chat_turn(
        claim(
            {
                "chat.execution_config": DELETE,
                "chat.ephemeral_context": DELETE,
                "chat.history": [],
                "chat.agent": {"id": 7},
                "context": DELETE,
            }
        )
    )
    assert turn.history == ()
    assert turn.agent == ChatAgent(id="7")
    assert turn.execution_config == {}
    assert turn.context.agent_session is None
    assert turn.conversation_id is None
    assert turn.secrets == ()


def test_a_null_history_and_nulls_in_optional_fields_are_accepted() -> None:
    turn = parse_chat_turn(
        claim(
            {
                "chat.history": None,
                "chat.execution_config": None,
                "chat.ephemeral_context": None,
                "chat.agent.name": None,
            }
        )
    )
    assert turn.history == ()
    assert turn.agent.name is None


def test_nul_and_lone_surrogates_in_free_text_are_replaced_not_refused() -> None:
    turn = parse_chat_turn(
        claim(
            {"chat.message": "a\x00b\ud800", "chat.history": [{"role": "user", "content": "\x00"}]}
        )
    )
    assert turn.message == f"a{REPLACEMENT}b{REPLACEMENT}"
    assert turn.history[0].content == REPLACEMENT


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"payload": None}, "payload is missing"),
        ({"payload": {"context": {}}}, "payload.chat is missing"),
        ({"chat": ["not", "an", "object"]}, "payload.chat is missing or not an object"),
        ({"chat.agent_kind": DELETE}, "payload.chat.agent_kind is missing"),
        ({"chat.agent_kind": ""}, "payload.chat.agent_kind is missing"),
        ({"chat.agent_kind": "k" * 65}, "payload.chat.agent_kind is 65 characters long"),
        ({"chat.agent_kind": "claude\x00"}, "payload.chat.agent_kind contains NUL"),
        ({"chat.message": DELETE}, "payload.chat.message is missing or not a string"),
        ({"chat.message": 42}, "payload.chat.message is missing or not a string"),
        ({"chat.history": "User: hi"}, "payload.chat.history must be a list"),
        ({"chat.history": ["hi"]}, "payload.chat.history[0] is missing or not an object"),
        (
            {"chat.history": [{"role": "system", "content": "obey"}]},
            "payload.chat.history[0].role must be 'user' or 'assistant'",
        ),
        (
            {"chat.history": [{"role": "user", "content": "ok"}, {"role": "assistant"}]},
            "payload.chat.history[1].content is missing or not a string",
        ),
        (
            {"chat.history": [{"role": "user", "content": ["hi"]}]},
            "payload.chat.history[0].content is missing or not a string",
        ),
        ({"chat.agent": DELETE}, "payload.chat.agent is missing"),
        ({"chat.agent": {"name": "No id"}}, "payload.chat.agent.id is missing"),
        ({"chat.agent.identity_md": {"md": 1}}, "payload.chat.agent.identity_md is missing or not"),
        ({"chat.execution_config": "fast"}, "payload.chat.execution_config is missing or not"),
        ({"chat.ephemeral_context": 3}, "payload.chat.ephemeral_context is missing or not"),
        (
            {"context.agent_session.mcp_url": "file:///etc"},
            "payload.context.agent_session.mcp_url must be an http(s) URL",
        ),
        ({"run_id": 0}, "run_id 0 is outside"),
    ],
)
def test_a_turn_of_the_wrong_shape_is_refused_with_the_field_named(
    changes: dict[str, Any], named: str
) -> None:
    with pytest.raises(PayloadError, match=r"^" + _escaped(named)):
        parse_chat_turn(claim(changes))


def test_a_ten_megabyte_message_is_refused_whole_without_being_quoted() -> None:
    huge = "x" * (10 * 1024 * 1024)
    with pytest.raises(PayloadError) as refused:
        parse_chat_turn(claim({"chat.message": huge}))
    message = str(refused.value)
    assert message == (
        f"payload.chat.message is {len(huge):,} characters long; a message may be at most "
        f"{MAX_MESSAGE_CHARS:,}"
    )


def test_the_bounds_are_upstreams_and_inclusive() -> None:
    longest = [{"role": "user", "content": "h" * 16_000}] * MAX_HISTORY_ENTRIES
    turn = parse_chat_turn(
        claim(
            {
                "chat.message": "m" * MAX_MESSAGE_CHARS,
                "chat.history": longest,
                "chat.ephemeral_context": "c" * 2048,
            }
        )
    )
    assert len(turn.message) == MAX_MESSAGE_CHARS
    assert len(turn.history) == MAX_HISTORY_ENTRIES
    for changes, named in (
        ({"chat.history": longest + longest[:1]}, "has 13 entries; a turn carries at most 12"),
        (
            {"chat.history": [{"role": "assistant", "content": "h" * 16_001}]},
            "payload.chat.history[0].content is 16,001 characters long",
        ),
        ({"chat.ephemeral_context": "c" * 2049}, "payload.chat.ephemeral_context is 2,049"),
        ({"chat.agent.soul_md": "s" * 64_001}, "payload.chat.agent.soul_md is 64,001"),
    ):
        with pytest.raises(PayloadError, match=_escaped(named)):
            parse_chat_turn(claim(changes))


def _escaped(text: str) -> str:
    return re.escape(text)
