"""The dev server's records (tokens, devices, watchers, automations, runs) and its texts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, NamedTuple

RunStatus = Literal["pending", "running", "completed", "failed", "timeout", "cancelled"]
Lane = Literal["watcher", "automation"]
LANES: Final = ("watcher", "automation")
# How `mint-child-token` answers: as current servers do, or as Lobu 1.6.0 did.
ChildTokenEra = Literal["current", "1.6.0"]
CHILD_TOKEN_ERAS: Final = ("current", "1.6.0")

DEFAULT_SCOPES: Final = "device_worker:run mcp:read mcp:write profile:read"
LOCAL_INIT_SCOPES: Final = "device_worker:run mcp:read mcp:write mcp:admin profile:read"
ONLINE_WINDOW_SECONDS: Final = 20 * 60

# The seen server wording; kept verbatim whatever `heartbeat_timeout` is set to.
SILENT_HEARTBEAT_ERROR: Final = (
    "Watcher run heartbeat went silent for over 3 minutes — the executor crashed or was abandoned"
)
# Inferred: the real message for this case was never observed.
NEVER_HEARTBEAT_ERROR: Final = (
    "Watcher run sent no heartbeat for over 2 hours after its claim"
    " — the executor crashed or was abandoned"
)


def iso(epoch: float) -> str:
    """Epoch seconds as the server prints times: `2025-01-02T03:04:05.678Z`."""
    stamp = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


@dataclass(frozen=True)
class User:
    id: str
    email: str
    name: str


@dataclass(frozen=True)
class Organization:
    id: str
    slug: str
    name: str


@dataclass(frozen=True)
class TokenRecord:
    token: str
    scopes: frozenset[str]
    bound_worker_id: str | None
    created_at: float
    expires_at: float | None = None  # None: never expires
    oauth_client_id: str | None = None  # set on OAuth access tokens, None on PATs
    session_run_id: int | None = None  # set on a run's agent_session token (MCP only)


@dataclass
class DeviceRecord:
    id: str  # the server's UUID (`device_workers.id`)
    worker_id: str  # the device's own name for itself
    platform: str | None
    app_version: str | None
    label: str | None
    capabilities: dict[str, Any]
    created_at: float
    last_seen_at: float | None = None  # None until the first poll
    polls: int = 0


@dataclass
class WatcherRecord:
    id: int
    name: str
    slug: str | None
    prompt: str | None
    agent_kind: str | None
    agent_id: str | None
    execution_config: dict[str, Any] | None
    device_id: str | None  # pinned device UUID
    status: str  # "active" | "paused"
    notification_channel: str
    notification_priority: str
    schedule: str | None
    created_at: float
    last_fired_at: float | None = None
    version_id: int = 1  # the real server numbers a watcher's versions; claims carry it


@dataclass
class AutomationRecord:
    id: int
    name: str
    slug: str | None
    prompt: str | None
    agent_kind: str | None
    agent_id: str | None  # the assigned agent; None: no agent_session in claims
    execution_config: dict[str, Any] | None
    extraction_schema: dict[str, Any] | None
    device_id: str | None  # pinned device UUID
    status: str  # "active" | "paused"
    max_attempts: int  # resumes allowed after the first spawn (the finalize-nudge budget)
    schedule: str | None
    created_at: float
    last_fired_at: float | None = None
    version_id: int = 1


@dataclass
class ConversationRecord:
    """A conversation whose execution target is a device (`executionTarget {kind: "device"}`)."""

    id: str
    device_id: str  # the pinned device UUID
    agent_kind: str  # the device must advertise it to be handed the turns
    agent_id: str
    agent_name: str | None
    identity_md: str | None
    soul_md: str | None
    user_md: str | None
    execution_config: dict[str, Any] | None
    created_at: float
    # The completed exchanges, oldest first, as the next turn's history carries them.
    history: list[dict[str, str]] = dataclasses.field(default_factory=list)


@dataclass
class RunRecord:
    id: int
    run_type: str
    watcher_id: int | None
    device_id: str | None  # the device UUID the run is pinned to
    approved_input: dict[str, Any]
    created_at: float
    raw: bool = False  # True: the poll answer carries `raw_payload` verbatim
    raw_payload: Any = None
    status: RunStatus = "pending"
    claimed_by: str | None = None
    claimed_at: float | None = None
    last_heartbeat_at: float | None = None
    completed_at: float | None = None
    claims: int = 0
    heartbeats: int = 0
    completion_attempts: int = 0  # every completion post, rejected ones included
    completions_committed: int = 0  # completion posts that changed the run
    output: str | None = None
    error: str | None = None
    exit_reason: str | None = None
    exit_code: int | None = None
    exit_signal: str | None = None
    duration_ms: int | None = None
    extracted_data: dict[str, Any] | None = None
    automation_id: int | None = None
    reason_code: str | None = None
    exit_reports: int = 0  # automation lane: exit reports that changed the run
    windows_completed: list[Any] = dataclasses.field(default_factory=list)  # via MCP
    session_token: str | None = None  # the claim's agent_session token
    conversation_id: str | None = None  # chat lane: the conversation the turn belongs to

    @property
    def dispatch_source(self) -> Any:
        return self.approved_input.get("dispatch_source")

    @property
    def window_start(self) -> Any:
        return self.approved_input.get("window_start")

    @property
    def window_end(self) -> Any:
        return self.approved_input.get("window_end")

    @property
    def terminal(self) -> bool:
        return self.status not in ("pending", "running")


@dataclass
class TranscriptRecord:
    """The transcript a run's device uploaded (`POST /lobu/worker/transcript/snapshot`):
    the latest snapshot, which extends every one before it."""

    id: int
    run_id: int
    terminal_status: str
    snapshot_jsonl: str
    byte_size: int  # of the snapshot, UTF-8
    received_at: float
    uploads: int = 1  # snapshots accepted for this run


class RequestLog(NamedTuple):
    method: str
    path: str
    status: int  # 0 when the connection was dropped without an answer


class McpCall(NamedTuple):
    """One JSON-RPC request the MCP stand-in received, and the bearer token it came with."""

    method: str  # initialize, tools/list, tools/call, ...
    tool: str | None  # the tool's name, for tools/call
    arguments: Any  # the tool's arguments, for tools/call
    token: str | None  # None: no (valid) bearer token


@dataclass
class SamplePins:
    """The sample watchers or automations `dev-server` seeded, and the device they wait on."""

    kind: Literal["watchers", "automations"] = "watchers"
    ids: list[int] = dataclasses.field(default_factory=list)
    worker_id: str | None = None  # the worker_id they are pinned to now
    follow_first_device: bool = False  # True until the first device that signs in takes them
    told: set[str] = dataclasses.field(default_factory=set)  # devices already told about them
    notices: list[str] = dataclasses.field(default_factory=list)  # every notice, in order
