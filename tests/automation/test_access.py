"""The CLI of an automation run gets the run's session, and then only the session."""

from __future__ import annotations

import pytest

from device_agent.executors.request import McpWiring
from device_agent.lanes.automation.access import check_session_url, run_access
from device_agent.lanes.automation.payload import parse_automation_run
from device_agent.server.protocol import PayloadError
from tests.support.claims import MCP_URL, SESSION_TOKEN, automation_claim

DEVICE_TOKEN = "owl_pat_DeviceTokenThatMustNotReachTheCli01"
DEVICE_MCP = McpWiring(url="http://127.0.0.1:8787/mcp", token=DEVICE_TOKEN)
SERVER = "https://lobu.example.com"


def test_with_a_session_the_cli_sees_only_the_session_token() -> None:
    access = run_access(
        parse_automation_run(automation_claim()), device_mcp=DEVICE_MCP, server=SERVER
    )
    assert access.mcp == McpWiring(url=MCP_URL, token=SESSION_TOKEN)
    assert access.env == {"LOBU_API_TOKEN": SESSION_TOKEN, "LOBU_MEMORY_URL": MCP_URL}
    assert access.secrets == (SESSION_TOKEN,)
    everything = f"{access.mcp.url} {access.mcp.token} {dict(access.env)} {access.secrets}"
    assert DEVICE_TOKEN not in everything


def test_without_a_session_the_device_wiring_is_used_as_today() -> None:
    run = parse_automation_run(automation_claim({"context.agent_session": None}))
    access = run_access(run, device_mcp=DEVICE_MCP, server=SERVER)
    assert access.mcp is DEVICE_MCP
    assert access.env == {}
    assert access.secrets == ()


def test_the_session_token_is_not_in_repr() -> None:
    access = run_access(
        parse_automation_run(automation_claim()), device_mcp=DEVICE_MCP, server=SERVER
    )
    assert SESSION_TOKEN not in repr(access)


# ------------------------------------- where the session token may go (issue 21, point 13)


@pytest.mark.parametrize(
    ("url", "server"),
    [
        ("https://mcp.elsewhere.example/mcp/acme", SERVER),  # encrypted: any host
        ("http://127.0.0.1:8787/mcp/acme", SERVER),
        ("http://[::1]:8787/mcp", SERVER),
        ("http://localhost:8787/mcp", SERVER),
        ("http://LOBU.local:8787/mcp/acme", "http://lobu.local:8787"),  # the server's own host
        ("http://lobu.local/mcp", "http://lobu.local:8787"),  # another port, the same host
    ],
)
def test_https_or_http_to_loopback_or_the_servers_own_host_is_accepted(
    url: str, server: str
) -> None:
    check_session_url(url, server=server)
    run = parse_automation_run(automation_claim({"context.agent_session.mcp_url": url}))
    access = run_access(run, device_mcp=DEVICE_MCP, server=server)
    assert access.mcp == McpWiring(url=url, token=SESSION_TOKEN)


@pytest.mark.parametrize(
    ("url", "server"),
    [
        ("http://evil.example/mcp", SERVER),
        ("http://lobu.example.com.evil.example/mcp", SERVER),
        ("http://10.0.0.5:8787/mcp", "http://lobu.local:8787"),
        ("http://127.0.0.1.nip.io/mcp", SERVER),
        ("http://lobu.localhost.evil.example/mcp", SERVER),
    ],
)
def test_plain_http_to_any_other_host_fails_the_run_with_what_to_do(url: str, server: str) -> None:
    run = parse_automation_run(automation_claim({"context.agent_session.mcp_url": url}))
    with pytest.raises(PayloadError) as refused:
        run_access(run, device_mcp=DEVICE_MCP, server=server)
    message = str(refused.value)
    assert message.startswith("payload.context.agent_session.mcp_url ")
    assert "unencrypted" in message
    assert "https://" in message
    assert SESSION_TOKEN not in message
