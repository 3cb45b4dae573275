"""Which Lobu credential the CLI gets for an automation run (docs/protocol.md, "Automation lane").

When the claim carries an `agent_session`, the run acts as the automation's
own agent: the session's MCP URL and token wire the CLI's MCP server, and the
child also gets `LOBU_API_TOKEN` / `LOBU_MEMORY_URL` for the `lobu` CLI. The
device token is then not given to the CLI at all. Without a session (older
servers) the CLI is wired as in the watcher lane, with the device's own
wiring. Either way the session token is a secret like the device token.

The session's `mcp_url` comes from the server, and the CLI sends the session
token there: it must be `https://`, or `http://` to this machine (loopback) or
to the configured server's own host, where the device token already goes.
Anything else fails the run (docs/protocol.md, "Automation lane").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from device_agent.config import is_loopback
from device_agent.executors.request import ExecutionRequest, McpWiring
from device_agent.lanes.automation.payload import AgentSession, AutomationRun
from device_agent.server.protocol import PayloadError, preview

ENV_TOKEN: Final = "LOBU_API_TOKEN"  # noqa: S105 - a variable name, not a secret
ENV_MEMORY_URL: Final = "LOBU_MEMORY_URL"


@dataclass(frozen=True)
class RunAccess:
    """What the executor hands the CLI for one automation run."""

    mcp: McpWiring | None
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # holds the session token
    secrets: tuple[str, ...] = field(default=(), repr=False)  # to redact, besides the device's

    def wired(self, request: ExecutionRequest) -> ExecutionRequest:
        """`request` with this access: its MCP wiring, its variables and secrets added."""
        return dataclasses.replace(
            request,
            mcp=self.mcp,
            env={**request.env, **self.env},
            secrets=(*request.secrets, *self.secrets),
        )


def run_access(run: AutomationRun, *, device_mcp: McpWiring | None, server: str) -> RunAccess:
    """The run's own session when the server sent one, else the device's wiring."""
    return session_access(run.context.agent_session, device_mcp=device_mcp, server=server)


def session_access(
    session: AgentSession | None, *, device_mcp: McpWiring | None, server: str
) -> RunAccess:
    """What a CLI gets for a run with this `agent_session` (the chat lane's too): the session
    as its only Lobu credential, else the device's wiring. `server` is the configured
    server's origin. Raises `PayloadError` when the session's `mcp_url` would carry its
    token in clear text to another host."""
    if session is None:
        return RunAccess(mcp=device_mcp)
    check_session_url(session.mcp_url, server=server)
    return RunAccess(
        mcp=McpWiring(url=session.mcp_url, token=session.token),
        env={ENV_TOKEN: session.token, ENV_MEMORY_URL: session.mcp_url},
        secrets=(session.token,),
    )


def check_session_url(url: str, *, server: str) -> None:
    """Refuse an `mcp_url` the session token must not be sent to: plain http:// to a host
    that is neither loopback nor the configured server's."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    host = (parts.hostname or "").lower()
    server_host = (urlsplit(server).hostname or "").lower()
    if parts.scheme == "http" and (is_loopback(host) or (host and host == server_host)):
        return
    raise PayloadError(
        f"payload.context.agent_session.mcp_url {preview(url)} would send the run's session "
        f"token unencrypted to {host or 'an unnamed host'}: device-agent accepts only "
        f"https://, or http:// to this machine or to the configured server's host "
        f"({server_host or server}); set the Lobu server's public URL to https://"
    )
