"""Which Lobu credential the CLI gets for an automation run (docs/protocol.md, "Automation lane").

When the claim carries an `agent_session`, the run acts as the automation's
own agent: the session's MCP URL and token wire the CLI's MCP server, and the
child also gets `LOBU_API_TOKEN` / `LOBU_MEMORY_URL` for the `lobu` CLI. The
device token is then not given to the CLI at all. Without a session (older
servers) the CLI is wired as in the watcher lane, with the device's own
wiring. Either way the session token is a secret like the device token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from device_agent.executors.request import McpWiring
from device_agent.lanes.automation.payload import AgentSession, AutomationRun

ENV_TOKEN: Final = "LOBU_API_TOKEN"  # noqa: S105 - a variable name, not a secret
ENV_MEMORY_URL: Final = "LOBU_MEMORY_URL"

# Flags this lane adds per executor profile. Claude Code runs headless, so it
# must be allowed the two completion tools up front (the upstream daemon does
# the same); nothing wider.
LANE_ARGS: Final[Mapping[str, tuple[str, ...]]] = {
    "claude-code": ("--allowedTools", "mcp__lobu__query_sdk,mcp__lobu__run_sdk"),
}


@dataclass(frozen=True)
class RunAccess:
    """What the executor hands the CLI for one automation run."""

    mcp: McpWiring | None
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # holds the session token
    secrets: tuple[str, ...] = field(default=(), repr=False)  # to redact, besides the device's


def run_access(run: AutomationRun, *, device_mcp: McpWiring | None) -> RunAccess:
    """The run's own session when the server sent one, else the device's wiring."""
    return session_access(run.context.agent_session, device_mcp=device_mcp)


def session_access(session: AgentSession | None, *, device_mcp: McpWiring | None) -> RunAccess:
    """What a CLI gets for a run with this `agent_session` (the chat lane's too): the session
    as its only Lobu credential, else the device's wiring."""
    if session is None:
        return RunAccess(mcp=device_mcp)
    return RunAccess(
        mcp=McpWiring(url=session.mcp_url, token=session.token),
        env={ENV_TOKEN: session.token, ENV_MEMORY_URL: session.mcp_url},
        secrets=(session.token,),
    )


def lane_args(profile_name: str) -> tuple[str, ...]:
    """Extra CLI flags this lane needs for `profile_name` (empty for most)."""
    return LANE_ARGS.get(profile_name, ())
