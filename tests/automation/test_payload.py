"""Parsing a claimed automation run: what real servers send is accepted, the unusable refused."""

from __future__ import annotations

from typing import Any

import pytest

from device_agent.lanes.automation.payload import AgentSession, parse_automation_run
from device_agent.server.protocol import Claim, PayloadError
from device_agent.textsafe import storable
from tests.support.claims import DELETE, MCP_URL, SESSION_TOKEN, automation_claim


def test_a_full_claim_is_read_into_typed_views() -> None:
    run = parse_automation_run(automation_claim())
    assert run.run_id == 812
    assert run.organization_id == "org_1"
    assert run.automation.id == "42"
    assert run.automation.name == "Inbox triage"
    assert run.automation.prompt == "  Sort the new mail.\n"  # trimmed only in the prompt
    assert run.automation.execution_config == {"timeout_seconds": 900, "model": "sonnet"}
    assert run.event.fired_at == "2026-11-30T07:00:00.000Z"
    assert run.event.approved_input["window_end"] == "2026-11-30T00:00:00.000Z"
    assert not run.event.is_turn
    assert run.context.device_worker_id == "5d0c6f8e-8c1e-4a52-9d1e-0f3f7c1b2a10"
    assert run.context.user_id == "user_9"
    assert run.context.agent_session == AgentSession(
        mcp_url=MCP_URL,
        token=SESSION_TOKEN,
        conversation_id="conv_1",
        expires_at="2026-11-30T09:00:00.000Z",
    )
    assert run.agent_kind == "claude-code"
    assert run.secrets == (SESSION_TOKEN,)


def test_numbers_for_ids_and_nulls_for_optional_fields_are_accepted() -> None:
    run = parse_automation_run(
        automation_claim(
            {
                "run_id": "813",
                "automation.id": 42,
                "automation.name": None,
                "automation.slug": None,
                "automation.agent_kind": None,
                "automation.prompt": None,
                "automation.execution_config": None,
                "event.trigger_event_id": 5150,
                "context.agent_session": None,
                "context.user": {"user_id": 9},
            }
        )
    )
    assert run.run_id == 813
    assert run.automation.id == "42"
    assert run.automation.display_name == "42"
    assert run.automation.execution_config == {}
    assert run.event.trigger_event_id == 5150
    assert run.context.agent_session is None
    assert run.context.user_id == "9"
    assert run.secrets == ()
    assert run.agent_kind is None  # the device's default, even though approved_input names one


def test_session_expiry_may_be_a_number_as_in_the_upstream_schema() -> None:
    run = parse_automation_run(
        automation_claim({"context.agent_session.expires_at": 1796022000000})
    )
    assert run.context.agent_session is not None
    assert run.context.agent_session.expires_at == 1796022000000


def test_missing_optional_parts_are_accepted() -> None:
    run = parse_automation_run(
        automation_claim(
            {
                "automation.extraction_schema": DELETE,
                "automation.slug": DELETE,
                "event": DELETE,
                "context": DELETE,
            }
        )
    )
    assert run.event.approved_input == {}
    assert run.event.fired_at is None
    assert run.context.device_worker_id is None
    assert run.context.agent_session is None


def test_the_session_token_never_shows_in_repr() -> None:
    run = parse_automation_run(automation_claim())
    assert SESSION_TOKEN not in repr(run)
    assert SESSION_TOKEN not in repr(run.context.agent_session)
    assert SESSION_TOKEN not in str(run.context)


def test_an_event_turn_is_recognised() -> None:
    run = parse_automation_run(automation_claim({"event.payload.trigger_execution": "turn"}))
    assert run.event.is_turn


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"payload": "not an object"}, "payload"),
        ({"payload": None}, "payload"),
        ({"automation": DELETE}, "payload.automation"),
        ({"automation": ["x"]}, "payload.automation"),
        ({"automation.id": None}, "payload.automation.id"),
        ({"automation.id": ""}, "payload.automation.id"),
        ({"automation.id": True}, "payload.automation.id"),
        ({"automation.id": "4\x002"}, "payload.automation.id"),
        ({"automation.name": 7}, "payload.automation.name"),
        ({"automation.prompt": {"text": "x"}}, "payload.automation.prompt"),
        ({"automation.agent_kind": 3}, "payload.automation.agent_kind"),
        ({"automation.agent_kind": "claude\udc80"}, "payload.automation.agent_kind"),
        ({"automation.execution_config": "fast"}, "payload.automation.execution_config"),
        ({"event": "yesterday"}, "payload.event"),
        ({"event.payload": [1, 2]}, "payload.event.payload"),
        ({"event.trigger_event_id": {"id": 1}}, "payload.event.trigger_event_id"),
        ({"event.fired_at": 1700000000}, "payload.event.fired_at"),
        ({"context": "device"}, "payload.context"),
        ({"context.device": "x"}, "payload.context.device"),
        ({"context.agent_session": "token"}, "payload.context.agent_session"),
        ({"context.agent_session.mcp_url": None}, "payload.context.agent_session.mcp_url"),
        ({"context.agent_session.mcp_url": "file:///etc"}, "payload.context.agent_session.mcp_url"),
        # Nothing that could end a quoted string in a CLI's config (issue 21, point 13).
        (
            {"context.agent_session.mcp_url": 'https://h/"x'},
            "payload.context.agent_session.mcp_url",
        ),
        (
            {"context.agent_session.mcp_url": "https://h/x\x7f"},
            "payload.context.agent_session.mcp_url",
        ),
        (
            {"context.agent_session.mcp_url": "https://h/\\x"},
            "payload.context.agent_session.mcp_url",
        ),
        (
            {"context.agent_session.mcp_url": "https://h/\x1b"},
            "payload.context.agent_session.mcp_url",
        ),
        ({"context.agent_session.token": ""}, "payload.context.agent_session.token"),
        ({"context.agent_session.token": 12345}, "payload.context.agent_session.token"),
        ({"context.agent_session.token": "a\r\nX-Evil: 1"}, "payload.context.agent_session.token"),
        ({"context.agent_session.token": "tok\ud800"}, "payload.context.agent_session.token"),
        ({"context.agent_session.expires_at": [1]}, "payload.context.agent_session.expires_at"),
    ],
)
def test_each_unusable_field_fails_with_its_name(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_automation_run(automation_claim(changes))
    assert str(caught.value).startswith(named + " ")


@pytest.mark.parametrize("run_id", [0, -1, 2**63])
def test_a_run_id_outside_bigint_is_refused(run_id: int) -> None:
    bad = Claim(run_id=run_id, run_type="automation", organization_id=None, payload={})
    with pytest.raises(PayloadError, match="run_id"):
        parse_automation_run(bad)


def test_the_largest_bigint_run_id_is_accepted() -> None:
    good = automation_claim()
    biggest = Claim(2**63 - 1, good.run_type, good.organization_id, good.payload)
    assert parse_automation_run(biggest).run_id == 2**63 - 1


def test_a_bad_session_token_is_not_shown_in_the_error() -> None:
    with pytest.raises(PayloadError) as caught:
        parse_automation_run(automation_claim({"context.agent_session.token": "secret\ud800rest"}))
    assert "secret" not in str(caught.value)


def test_nul_and_lone_surrogates_in_free_text_are_replaced_not_refused() -> None:
    run = parse_automation_run(
        automation_claim(
            {
                "automation.prompt": "Sort\x00 mail \ud83d",
                "automation.name": "Inbox\udfff",
                "event.payload.note": ["a\x00", {"k\ud800": "v\udc00"}],
            }
        )
    )
    assert run.automation.prompt == "Sort\ufffd mail \ufffd"
    assert run.automation.name == "Inbox\ufffd"
    assert run.event.approved_input["note"] == ["a\ufffd", {"k\ufffd": "v\ufffd"}]


def test_non_finite_numbers_in_approved_input_become_null() -> None:
    run = parse_automation_run(automation_claim({"event.payload.score": float("nan")}))
    assert run.event.approved_input["score"] is None


def test_storable_replaces_only_nul_and_lone_surrogates() -> None:
    text = "ok é 😀 \x01 \x00 \ud800 \udfff end"
    assert storable(text) == "ok é 😀 \x01 \ufffd \ufffd \ufffd end"
    assert storable(text).encode("utf-8")
