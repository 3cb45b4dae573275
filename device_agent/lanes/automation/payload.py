"""Typed views of a claimed automation run (docs/protocol.md, "Automation lane").

`parse_automation_run` turns the poll answer's `payload` into frozen
dataclasses. Nothing but `PayloadError` escapes it, and its message names the
field: a bad payload fails that run, never the loop.

What is accepted is what real servers send: ids as strings or numbers, nulls
and missing optional fields. What is refused is what cannot be used:

- a payload that is not an object, or has no `automation` object;
- a `run_id` outside 1..2^63-1 (the server's bigint; anything else is not a run);
- a lone surrogate or NUL in an identifier or credential (the automation id,
  `agent_kind`, the session's `mcp_url` and `token`): such a value can be
  neither sent in a header nor matched against a profile, so the run fails
  with the field named. Free text (prompt, name, slug, the event's
  `approved_input`) is only ever shown to the CLI, so there the same
  characters are replaced (`device_agent.textsafe.storable`) and the run goes on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from device_agent.server.protocol import (
    Claim,
    PayloadError,
    optional_str,
    preview,
    read_mapping,
)
from device_agent.textsafe import has_unstorable, storable

MAX_RUN_ID: Final = 2**63 - 1
_UNSAFE_IN_URL: Final = re.compile(r"[\s\"'\\\x00-\x1f\x7f]")


@dataclass(frozen=True)
class AgentSession:
    """The per-run Lobu credential of the automation's own agent (about 2 h).

    The token is a secret exactly like the device token: it never shows in
    `repr`, logs, argv or files other than 0600 ones deleted after the run.
    """

    mcp_url: str
    token: str = field(repr=False)
    conversation_id: str | None = None
    expires_at: str | float | None = None  # upstream's schema says a number; PROTOCOL an ISO time
    resume_session_id: str | None = None


@dataclass(frozen=True)
class Automation:
    id: str
    name: str | None
    slug: str | None
    agent_kind: str | None
    prompt: str | None
    execution_config: Mapping[str, Any] = field(default_factory=dict)
    extraction_schema: Any = None

    @property
    def display_name(self) -> str:
        """Name, else slug, else id; like the upstream daemon, an empty name is kept."""
        if self.name is not None:
            return self.name
        return self.slug if self.slug is not None else self.id


@dataclass(frozen=True)
class AutomationEvent:
    trigger_event_id: str | int | None
    fired_at: str | None
    approved_input: Mapping[str, Any]

    @property
    def is_turn(self) -> bool:
        """An event turn completes by a clean exit, not by `completeWindow`."""
        return self.approved_input.get("trigger_execution") == "turn"

    @property
    def finalize_nudge_count(self) -> int:
        count = self.approved_input.get("finalize_nudge_count")
        return count if isinstance(count, int) and not isinstance(count, bool) else 0


@dataclass(frozen=True)
class AutomationContext:
    device_worker_id: str | None  # the server's device UUID, not our worker_id
    user_id: str | None
    agent_session: AgentSession | None = None


@dataclass(frozen=True)
class AutomationRun:
    run_id: int
    organization_id: str | None
    automation: Automation
    event: AutomationEvent
    context: AutomationContext

    @property
    def agent_kind(self) -> str | None:
        """The automation's kind; None means the device's default agent.

        Unlike the watcher lane, approved_input's `agent_kind` is not consulted:
        the upstream daemon reads only the automation's.
        """
        return self.automation.agent_kind or None

    @property
    def secrets(self) -> tuple[str, ...]:
        """What redaction must hide for this run, besides the device token."""
        session = self.context.agent_session
        return (session.token,) if session else ()


def parse_automation_run(claim: Claim) -> AutomationRun:
    """Validate a claimed automation run. Raises `PayloadError` naming the bad field."""
    if not 1 <= claim.run_id <= MAX_RUN_ID:
        raise PayloadError(f"run_id {claim.run_id} is outside 1..{MAX_RUN_ID}")
    payload = read_mapping(claim.payload, "payload")
    return AutomationRun(
        run_id=claim.run_id,
        organization_id=claim.organization_id,
        automation=_automation(read_mapping(payload.get("automation"), "payload.automation")),
        event=_event(payload.get("event")),
        context=read_context(payload.get("context")),
    )


def _automation(raw: Mapping[str, Any]) -> Automation:
    where = "payload.automation"
    config = raw.get("execution_config")
    return Automation(
        id=_identifier(raw.get("id"), f"{where}.id"),
        name=_text(raw, "name", where),
        slug=_text(raw, "slug", where),
        agent_kind=_kind(raw, where),
        prompt=_text(raw, "prompt", where),
        execution_config=(
            {} if config is None else dict(read_mapping(config, f"{where}.execution_config"))
        ),
        extraction_schema=raw.get("extraction_schema"),
    )


def _event(value: object) -> AutomationEvent:
    where = "payload.event"
    raw = read_mapping(value, where) if value is not None else {}
    approved = raw.get("payload")
    trigger = raw.get("trigger_event_id")
    if trigger is not None and not _is_id(trigger):
        raise PayloadError(
            f"{where}.trigger_event_id must be a string or a number, got {preview(trigger)}"
        )
    return AutomationEvent(
        trigger_event_id=storable(trigger) if isinstance(trigger, str) else trigger,
        fired_at=_text(raw, "fired_at", where),
        approved_input=(
            {} if approved is None else _json_safe(dict(read_mapping(approved, f"{where}.payload")))
        ),
    )


def read_context(value: object) -> AutomationContext:
    """`payload.context`, the same in every lane of current servers (the chat lane reads it
    too): the device and user ids, and the run's own `agent_session` when there is one."""
    where = "payload.context"
    raw = read_mapping(value, where) if value is not None else {}
    device = read_mapping(raw.get("device") or {}, f"{where}.device")
    user = read_mapping(raw.get("user") or {}, f"{where}.user")
    session = raw.get("agent_session")
    return AutomationContext(
        device_worker_id=_optional_id(device.get("worker_id"), f"{where}.device.worker_id"),
        user_id=_optional_id(user.get("user_id"), f"{where}.user.user_id"),
        agent_session=_session(session) if session is not None else None,
    )


def _session(value: object) -> AgentSession:
    # A session that cannot be used fails the run: falling back to the device
    # token would hand the CLI a wider credential than the server meant to.
    where = "payload.context.agent_session"
    raw = read_mapping(value, where)
    url = _credential(raw.get("mcp_url"), f"{where}.mcp_url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PayloadError(f"{where}.mcp_url must be an http(s) URL, got {preview(url)}")
    if _UNSAFE_IN_URL.search(url):
        # It goes into a CLI's config (TOML, JSON) and header: no quote or control character.
        raise PayloadError(
            f"{where}.mcp_url holds a space, quote, backslash or control character, "
            f"which no URL has: {preview(url)}"
        )
    return AgentSession(
        mcp_url=url,
        token=_credential(raw.get("token"), f"{where}.token", show=False),
        conversation_id=_optional_id(raw.get("conversation_id"), f"{where}.conversation_id"),
        expires_at=_expiry(raw.get("expires_at"), f"{where}.expires_at"),
        resume_session_id=_text(raw, "resume_session_id", where),
    )


# ----------------------------------------------------------------- fields


def _is_id(value: object) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


def _identifier(value: object, where: str) -> str:
    """A required id: a non-empty string or an integer, returned as a string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"{where} is missing or not a string or number: {preview(value)}")
    if has_unstorable(value):
        raise PayloadError(f"{where} contains NUL or a lone surrogate: {preview(value)}")
    return value


def _optional_id(value: object, where: str) -> str | None:
    return None if value is None else _identifier(value, where)


def _credential(value: object, where: str, *, show: bool = True) -> str:
    shown = preview(value) if show else f"a {type(value).__name__}"
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"{where} is missing or not a non-empty string (got {shown})")
    if has_unstorable(value) or any(c in value for c in "\r\n"):
        raise PayloadError(f"{where} contains characters that cannot be sent in a request")
    return value


def _expiry(value: object, where: str) -> str | float | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return value
    raise PayloadError(f"{where} must be a time (string or number), got {preview(value)}")


def _kind(raw: Mapping[str, Any], where: str) -> str | None:
    kind = optional_str(raw, "agent_kind", where)
    if kind is not None and has_unstorable(kind):
        raise PayloadError(f"{where}.agent_kind contains NUL or a lone surrogate: {preview(kind)}")
    return kind


def _text(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = optional_str(raw, key, where)
    return storable(value) if value is not None else None


def _json_safe(value: Any) -> Any:
    """approved_input as the CLI may see it: free text made storable, non-finite numbers nulled."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # Python's json reads NaN/Infinity; JSON itself has no such number
    if isinstance(value, Mapping):
        return {storable(str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value
