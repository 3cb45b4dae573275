"""What the device tells the server on every poll (docs/protocol.md, "Poll and claim").

Current servers hand a device automation runs only when it registers as
`macos`, or as `headless` with the `automations.execute` capability, and only
runs of an `agent_kind` it lists (docs/protocol.md, "Automation lane"). Every
field is harmless to a watcher-era server (unknown capabilities are dropped,
`agent_kinds` and `wait_seconds` ignored), so one body serves both lanes.

At the owner's daily limit (device_agent/agent/limits.py) a poll offers no agent
kinds and no capacity: a current server then hands the run to no one here and
keeps it queued, while still seeing the device. A watcher-era server ignores
both, so to it the device sends no poll at all until the day turns
(device_agent/agent/poll_loop.py).
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from device_agent.config import MAX_WAIT_SECONDS
from device_agent.executors.profiles import Profile

CAPABILITIES: Final[Mapping[str, bool]] = {"automations.execute": True}
# Omitted means 1: this agent must never be offered connector runs.
BACKEND_CAPACITY: Final[Mapping[str, int]] = {"compiled_connector": 0}
MAX_CAPACITY: Final = 1024
# The only app_version shape a server with a version floor accepts; anything
# else is refused as if it were too old.
_WIRE_VERSION: Final = re.compile(r"\d+\.\d+\.\d+(?:\.\d+)?")

# Executor profile name -> the agent_kind servers use. Profiles not listed
# (demo, command) run only runs routed to them by name, and are not advertised.
AGENT_KINDS: Final[Mapping[str, str]] = {
    "claude-code": "claude-code",
    "codex": "codex",
    "opencode": "opencode",
    "gemini": "gemini",
    "pi": "pi",
    "agy": "agy",
}


def device_platform(system: str = sys.platform) -> str:
    """`macos` on a Mac, `headless` elsewhere: `linux` would get no capability at all."""
    return "macos" if system == "darwin" else "headless"


def wire_version(version: str) -> str:
    """`version` as plain dotted numbers: "1.4.0rc1" and "1.4.0.dev3+g12ab" become "1.4.0"."""
    if _WIRE_VERSION.fullmatch(version):
        return version
    match = re.match(r"\d+\.\d+\.\d+", version)
    return match.group(0) if match else "0.0.0"


def poll_body(
    *,
    worker_id: str,
    app_version: str,
    label: str,
    agent_kinds: Iterable[str],
    capacity_available: int,
    wait_seconds: int,
    platform: str | None = None,
    at_limit: bool = False,
) -> dict[str, Any]:
    """The `POST /api/workers/poll` body for both lanes.

    `wait_seconds` is clamped to 0..25 and sent as 0 when no slot is free, so
    a full device is never held; `agent_kinds` may be empty, and then a
    current server hands out nothing. `at_limit`: the owner's daily limit is
    reached, so the body offers no agent kinds and no capacity whatever else says.
    """
    if at_limit:
        agent_kinds, capacity_available = (), 0
    capacity = max(0, min(int(capacity_available), MAX_CAPACITY))
    wait = max(0, min(int(wait_seconds), MAX_WAIT_SECONDS)) if capacity else 0
    return {
        "worker_id": worker_id,
        "platform": platform or device_platform(),
        "app_version": wire_version(app_version),
        "label": label,
        "capabilities": dict(CAPABILITIES),
        "backend_capacity": dict(BACKEND_CAPACITY),
        "agent_kinds": sorted(set(agent_kinds)),
        "capacity_available": capacity,
        "wait_seconds": wait,
    }


def offered_agent_kinds(
    profiles: Mapping[str, Profile], path: str, *, default_agent: str | None
) -> list[str]:
    """The agent kinds this device offers a current server, sorted: what every poll sends
    as `agent_kinds` and what `doctor` shows (one answer for both).

    A known CLI is offered under the kind servers use (`AGENT_KINDS`); the device's
    default agent is offered under its own profile name too, so a profile of the user's
    own (or the demo's) can run automations that name it. Only what is actually found on
    `path` (the child's PATH) is offered: a listed kind the device cannot run would be
    claimed and fail with "binary not found".
    """
    kinds = dict(AGENT_KINDS)
    if default_agent:
        kinds.setdefault(default_agent, default_agent)
    found = {
        kinds[name]
        for name, profile in profiles.items()
        if name in kinds and profile.resolve(path) is not None
    }
    return sorted(found)


class AgentKindsCheck:
    """`offered_agent_kinds`, re-checked about every `every` seconds rather than on each
    poll (a CLI installed meanwhile is advertised within a minute; `doctor` checks at once).
    The check looks at the disk, so it runs off the event loop."""

    def __init__(
        self,
        profiles: Mapping[str, Profile],
        path: Callable[[], str],
        *,
        default_agent: str | None,
        every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._profiles = profiles
        self._path = path
        self._default_agent = default_agent
        self._every = every
        self._clock = clock
        self._found: list[str] = []
        self._checked_at: float | None = None

    async def current(self) -> list[str]:
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self._every:
            self._found = await asyncio.to_thread(
                offered_agent_kinds,
                self._profiles,
                self._path(),
                default_agent=self._default_agent,
            )
            self._checked_at = now
        return list(self._found)


# ------------------------------------------------------------- messages


def platform_mismatch_message(sent: str, server_text: str | None = None) -> str:
    """What to tell the user when the server refuses our platform (403 platform_mismatch).

    The server fixes a device's platform on its first poll; there is no route
    to change it. An install that first polled as `linux` (older agents) now
    sends `headless`, which current servers need for automation runs.
    """
    said = f" (the server said: {server_text})" if server_text else ""
    return (
        f"The server has this device registered with another platform than {sent!r}{said}. "
        "Older device-agent versions registered as 'linux', which current Lobu servers never "
        "hand automation runs to. Fix: give this install a new identity, either by setting "
        "DEVICE_AGENT_WORKER_ID to a new value or by deleting the worker_id file in the "
        "state dir (see `device-agent doctor`), then start again; the old device can then be "
        "removed on Lobu's Devices page. A device token bound to the old worker_id needs a "
        "new `device-agent login` too."
    )


def upgrade_required_message(server_text: str | None = None) -> str:
    """Status text for 409 upgrade_required: the agent stops claiming and checks again rarely."""
    detail = f": {server_text}" if server_text else "."
    return (
        f"The server requires a newer device-agent{detail} "
        "No runs are claimed until you upgrade; the agent checks again now and then."
    )
