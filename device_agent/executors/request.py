"""What a lane asks the executor to run: the request, and where its CLI reaches the Lobu tools.

The lanes build requests, the pipeline adds the tools' wiring, and `launch` turns a request
into argv, environment and files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class McpWiring:
    """Where the CLI reaches the Lobu tools, and the token it uses there."""

    url: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class ExecutionRequest:
    run_id: int
    agent_kind: str  # the executor profile's name
    prompt: str
    execution_config: Mapping[str, Any] = field(default_factory=dict)
    mcp: McpWiring | None = None
    # What the run's lane adds (docs/protocol.md, "Automation lane"): variables set after
    # the secret filter (they may hold the run's own credential), flags appended to argv,
    # and values to redact besides the device's.
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    args: tuple[str, ...] = ()
    secrets: tuple[str, ...] = field(default=(), repr=False)
