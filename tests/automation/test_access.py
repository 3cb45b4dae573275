"""The CLI of an automation run gets the run's session, and then only the session."""

from __future__ import annotations

from device_agent.executors.request import McpWiring
from device_agent.lanes.automation.access import lane_args, run_access
from device_agent.lanes.automation.payload import parse_automation_run
from tests.support.claims import MCP_URL, SESSION_TOKEN, automation_claim

DEVICE_TOKEN = "owl_pat_DeviceTokenThatMustNotReachTheCli01"
DEVICE_MCP = McpWiring(url="http://127.0.0.1:8787/mcp", token=DEVICE_TOKEN)


def test_with_a_session_the_cli_sees_only_the_session_token() -> None:
    access = run_access(parse_automation_run(automation_claim()), device_mcp=DEVICE_MCP)
    assert access.mcp == McpWiring(url=MCP_URL, token=SESSION_TOKEN)
    assert access.env == {"LOBU_API_TOKEN": SESSION_TOKEN, "LOBU_MEMORY_URL": MCP_URL}
    assert access.secrets == (SESSION_TOKEN,)
    everything = f"{access.mcp.url} {access.mcp.token} {dict(access.env)} {access.secrets}"
    assert DEVICE_TOKEN not in everything


def test_without_a_session_the_device_wiring_is_used_as_today() -> None:
    run = parse_automation_run(automation_claim({"context.agent_session": None}))
    access = run_access(run, device_mcp=DEVICE_MCP)
    assert access.mcp is DEVICE_MCP
    assert access.env == {}
    assert access.secrets == ()


def test_the_session_token_is_not_in_repr() -> None:
    access = run_access(parse_automation_run(automation_claim()), device_mcp=DEVICE_MCP)
    assert SESSION_TOKEN not in repr(access)


def test_claude_code_gets_the_two_completion_tools_and_others_nothing() -> None:
    assert lane_args("claude-code") == (
        "--allowedTools",
        "mcp__lobu__query_sdk,mcp__lobu__run_sdk",
    )
    assert lane_args("codex") == ()
    assert lane_args("pi") == ()
