"""Typed views of what the Lobu worker API sends: poll answers and watcher payloads.

See docs/protocol.md, "Poll and claim". Routes, report bodies and what an
answer means per run type live in `device_agent.lanes`. Parsing never lets
anything but `PayloadError` escape: the server is allowed to send garbage, and
garbage must fail one run, never the loop.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeGuard

WORKER_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

DEFAULT_NEXT_POLL_SECONDS: Final = 10.0
MIN_NEXT_POLL_SECONDS: Final = 0.5
MAX_NEXT_POLL_SECONDS: Final = 3600.0


class PayloadError(ValueError):
    """The server sent something we cannot use; the message says what."""


# --------------------------------------------------------------------- poll


@dataclass(frozen=True)
class Claim:
    """A run the server handed us. It is ours from the moment it is parsed."""

    run_id: int
    run_type: str
    organization_id: str | None
    payload: Any
    # Why the run cannot be read at all (its payload is not there): it is reported failed
    # with these words and never run. None for a claim read from a whole answer.
    unreadable: str | None = None


@dataclass(frozen=True)
class Idle:
    """Nothing to do: wait `next_poll_seconds` (or less, when woken)."""

    next_poll_seconds: float
    skipped_run_id: int | None = None
    error: str | None = None


PollAnswer = Claim | Idle


# What names the run in a poll answer handing one over: top-level keys the server writes
# before `payload` (after its own metadata, if any: docs/protocol.md, "Poll and claim").
_RUN_ID: Final = re.compile(rb'"run_id"\s*:\s*([0-9]{1,18})\s*[,}]')
_RUN_TYPE: Final = re.compile(rb'"run_type"\s*:\s*"([a-z_]{1,40})"')


def claim_in_head(head: bytes, why: str) -> Claim | None:
    """The run that a poll answer too large to read was handing over, from the answer's
    first bytes (what precedes its `payload`); None when they do not name one. The server
    claimed the run for this device as it answered: reported failed with `why`, it is not
    left claimed until the server reaps it."""
    before_payload = head.split(b'"payload"', 1)[0]
    run_id, run_type = _RUN_ID.search(before_payload), _RUN_TYPE.search(before_payload)
    if run_id is None or run_type is None or not head.lstrip().startswith(b"{"):
        return None
    return Claim(
        int(run_id[1]),
        run_type[1].decode("ascii"),
        organization_id=None,
        payload=None,
        unreadable=why,
    )


def parse_poll(body: Any) -> PollAnswer:
    """Read a 200 poll answer. Raises `PayloadError` when it is neither shape."""
    if not isinstance(body, Mapping):
        raise PayloadError(f"poll answer is not a JSON object: {preview(body)}")
    if "run_id" in body and "skipped_run_id" not in body:
        run_id = body.get("run_id")
        if not _is_int(run_id):
            raise PayloadError(f"poll answer has a run_id that is not an integer: {run_id!r}")
        run_type = body.get("run_type")
        org = body.get("organization_id")
        return Claim(
            run_id=int(run_id),
            run_type=run_type if isinstance(run_type, str) else repr(run_type),
            organization_id=org if isinstance(org, str) else None,
            payload=body.get("payload"),
        )
    next_poll = body.get("next_poll_seconds", DEFAULT_NEXT_POLL_SECONDS)
    if not is_number(next_poll) or not math.isfinite(next_poll) or next_poll < 0:
        next_poll = DEFAULT_NEXT_POLL_SECONDS
    # Honour the server, within reason: 0 would be a busy loop, a day a dead agent.
    next_poll = min(max(next_poll, MIN_NEXT_POLL_SECONDS), MAX_NEXT_POLL_SECONDS)
    skipped = body.get("skipped_run_id")
    error = body.get("error")
    return Idle(
        next_poll_seconds=float(next_poll),
        skipped_run_id=int(skipped) if _is_int(skipped) else None,
        error=error if isinstance(error, str) else None,
    )


# ------------------------------------------------------------ watcher runs


@dataclass(frozen=True)
class Watcher:
    id: str
    name: str
    slug: str | None
    agent_kind: str | None
    prompt: str | None
    notification_channel: str = "canvas"
    notification_priority: str = "normal"
    execution_config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WatcherEvent:
    fired_at: str | None
    window_start: str
    window_end: str
    dispatch_source: str | None
    approved_input: Mapping[str, Any]


@dataclass(frozen=True)
class WatcherRun:
    run_id: int
    organization_id: str | None
    watcher: Watcher
    event: WatcherEvent
    context: Mapping[str, Any]

    @property
    def agent_kind(self) -> str | None:
        """The watcher's kind, else the one the server put in approved_input."""
        if self.watcher.agent_kind:
            return self.watcher.agent_kind
        kind = self.event.approved_input.get("agent_kind")
        return kind if isinstance(kind, str) and kind else None


def parse_watcher_run(claim: Claim) -> WatcherRun:
    """Validate a claimed watcher run. Raises `PayloadError` naming the bad field."""
    payload = read_mapping(claim.payload, "payload")
    raw_watcher = read_mapping(payload.get("watcher"), "payload.watcher")
    raw_event = read_mapping(payload.get("event"), "payload.event")
    approved = read_mapping(raw_event.get("payload"), "payload.event.payload")
    context = payload.get("context")

    watcher_id = raw_watcher.get("id")
    if not (isinstance(watcher_id, str) and watcher_id) and not _is_int(watcher_id):
        raise PayloadError(f"payload.watcher.id is missing or not a string: {watcher_id!r}")
    config = raw_watcher.get("execution_config")
    if config is None:
        config = {}
    config = read_mapping(config, "payload.watcher.execution_config")

    watcher = Watcher(
        id=str(watcher_id),
        name=optional_str(raw_watcher, "name", "payload.watcher") or f"watcher {watcher_id}",
        slug=optional_str(raw_watcher, "slug", "payload.watcher"),
        agent_kind=optional_str(raw_watcher, "agent_kind", "payload.watcher"),
        prompt=optional_str(raw_watcher, "prompt", "payload.watcher"),
        notification_channel=optional_str(raw_watcher, "notification_channel", "payload.watcher")
        or "canvas",
        notification_priority=optional_str(raw_watcher, "notification_priority", "payload.watcher")
        or "normal",
        execution_config=dict(config),
    )
    event = WatcherEvent(
        fired_at=optional_str(raw_event, "fired_at", "payload.event"),
        window_start=_iso_time(approved, "window_start"),
        window_end=_iso_time(approved, "window_end"),
        dispatch_source=optional_str(approved, "dispatch_source", "payload.event.payload"),
        approved_input=dict(approved),
    )
    return WatcherRun(
        run_id=claim.run_id,
        organization_id=claim.organization_id,
        watcher=watcher,
        event=event,
        context=dict(context) if isinstance(context, Mapping) else {},
    )


# ----------------------------------------------------------------- helpers


def _is_int(value: object) -> TypeGuard[int | str]:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.isdecimal() and len(value) < 19  # int() reads these


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PayloadError(f"{where} is missing or not an object (got {preview(value)})")
    return value


def optional_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{where}.{key} must be a string, got {preview(value)}")
    return value


def _iso_time(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    where = f"payload.event.payload.{key}"
    if not isinstance(value, str):
        raise PayloadError(f"{where} must be an ISO timestamp string, got {preview(value)}")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise PayloadError(f"{where} is not a valid ISO timestamp: {value!r}") from None
    return value


def preview(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
