"""In-memory state of the dev server: one user, one org, tokens, devices, watchers, runs.

All of it sits behind one re-entrant lock. The HTTP handlers hold it for the
whole of a request's processing and never await while holding it, so every
request is atomic (a poll claims at most one run, exactly once), and a test
thread seeding or inspecting state through the public methods never sees a
half-made change. Methods that return records return copies ("snapshots").

The model is deliberately small: a single dev user who owns every token and
device, a single personal organization, no scheduler (runs are queued by
tests, the trigger routes or the `/_dev` admin routes), and a reaper that
times out runs whose executor went quiet.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, NamedTuple

from device_agent.devserver.faults import FaultInjector
from device_agent.devserver.oauth import OAuthStore

RunStatus = Literal["pending", "running", "completed", "failed", "timeout", "cancelled"]
Lane = Literal["watcher", "automation"]
LANES: Final = ("watcher", "automation")

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


class RequestLog(NamedTuple):
    method: str
    path: str
    status: int  # 0 when the connection was dropped without an answer


class DevState:
    """Everything the dev server knows. Safe to use from any thread."""

    def __init__(
        self,
        *,
        create_checkin_watcher: bool = True,
        heartbeat_timeout: float = 180.0,
        unheartbeated_timeout: float = 7200.0,
        allow_anonymous: bool = False,
        next_poll_seconds: float = 10,
        clock: Callable[[], float] = time.time,
        lane: Lane = "watcher",
        warmup_seconds: float = 0.0,
    ) -> None:
        """`allow_anonymous=False` (the default) rejects requests without an
        Authorization header with 401. A real local Lobu server without a worker
        secret would instead treat them as a trusted anonymous worker that may
        touch any run (docs/protocol.md, "Authentication and login"); set True to
        reproduce that.

        `lane` is the server era to imitate: "watcher" (Lobu 1.6.0) or
        "automation" (current Lobu). `warmup_seconds` holds every poll that
        arrives that long after the server starts, then processes it even if
        its client gave up, as a real server does after a boot (default 0: no
        warm-up, so the suite stays fast)."""
        if lane not in LANES:
            raise ValueError(f"unknown lane {lane!r}; expected one of {LANES}")
        self.lane: Lane = lane
        self.warmup_seconds = warmup_seconds
        self.warm_until = 0.0  # time.monotonic() after which polls are no longer held
        self.create_checkin_watcher = create_checkin_watcher
        self.heartbeat_timeout = heartbeat_timeout
        self.unheartbeated_timeout = unheartbeated_timeout
        self.allow_anonymous = allow_anonymous
        self.next_poll_seconds = next_poll_seconds  # what an idle poll answers (tests stretch it)
        self.clock = clock
        self.lock = threading.RLock()
        # Told (from whichever thread queued it) that a run was queued: held polls wake at once.
        self.run_queued_listeners: set[Callable[[], None]] = set()
        self.held_polls = 0  # long-polls being held right now
        self.faults = FaultInjector()
        self.oauth = OAuthStore()
        self.user = User(id="usr_dev0001", email="dev@localhost", name="Dev User")
        self.org = Organization(id="org_dev0001", slug="dev", name="Dev workspace")
        self._tokens: dict[str, TokenRecord] = {}
        self._devices: dict[str, DeviceRecord] = {}  # by worker_id: there is one user
        self._watchers: dict[int, WatcherRecord] = {}
        self._automations: dict[int, AutomationRecord] = {}
        self.min_app_version: str | None = None  # the operator's client floor (automation lane)
        self.public_url = "http://127.0.0.1"  # set by DevServer once it listens
        self._runs: dict[int, RunRecord] = {}
        # The unique key of the real `insight_windows` table: (watcher, window start).
        self._windows: dict[tuple[int, str], str] = {}  # -> window end
        self._requests: list[RequestLog] = []
        self._next_watcher_id = 1
        self._next_automation_id = 1
        self._next_run_id = 1

    # ------------------------------------------------------------ seeding

    def add_token(
        self,
        scopes: str = DEFAULT_SCOPES,
        bound_worker_id: str | None = None,
        *,
        token: str | None = None,
        expires_in: float | None = None,
        oauth_client_id: str | None = None,
        session_run_id: int | None = None,
    ) -> str:
        """Create a PAT (`owl_pat_` + 32 base64url chars unless `token` is given).

        `expires_in` seconds from now; None never expires (like a local-init PAT).
        """
        value = token or "owl_pat_" + secrets.token_urlsafe(24)
        with self.lock:
            now = self.clock()
            self._tokens[value] = TokenRecord(
                token=value,
                scopes=frozenset(scopes.split()),
                bound_worker_id=bound_worker_id,
                created_at=now,
                expires_at=None if expires_in is None else now + expires_in,
                oauth_client_id=oauth_client_id,
                session_run_id=session_run_id,
            )
        return value

    def start_warmup(self, seconds: float | None = None) -> None:
        """Hold polls for `seconds` from now (default: the configured warm-up), as after a boot."""
        with self.lock:
            span = self.warmup_seconds if seconds is None else seconds
            self.warm_until = time.monotonic() + span

    def warmup_left(self) -> float:
        """Seconds until polls are no longer held (0 once warm)."""
        with self.lock:
            return max(0.0, self.warm_until - time.monotonic())

    def revoke_token(self, token: str) -> None:
        with self.lock:
            self._tokens.pop(token, None)

    def revoke_bound_tokens(self, worker_id: str) -> None:
        with self.lock:
            for value in [t.token for t in self._tokens.values() if t.bound_worker_id == worker_id]:
                del self._tokens[value]

    def add_watcher(
        self,
        prompt: str | None,
        name: str = "Watcher",
        slug: str | None = None,
        agent_kind: str | None = "claude-code",
        execution_config: dict[str, Any] | None = None,
        pinned_worker_id: str | None = None,
        active: bool = True,
        notification_channel: str = "canvas",
        notification_priority: str = "normal",
        *,
        agent_id: str | None = "default",
        schedule: str | None = None,
    ) -> str:
        """Create a watcher; returns its id (an int, as a string, as the wire has it).

        `pinned_worker_id` is the device's worker_id; a device that has not polled
        yet is created as if it had, so runs can be queued before the first poll.
        `agent_id=None` makes triggers answer "Watcher has no agent assigned".
        """
        with self.lock:
            device_id = None
            if pinned_worker_id is not None:
                device_id = self.ensure_device(pinned_worker_id).id
            watcher = self._new_watcher(
                name=name,
                slug=slug if slug is not None else slugify(name),
                prompt=prompt,
                agent_kind=agent_kind,
                agent_id=agent_id,
                execution_config=execution_config,
                device_id=device_id,
                status="active" if active else "paused",
                notification_channel=notification_channel,
                notification_priority=notification_priority,
                schedule=schedule,
            )
            return str(watcher.id)

    def set_watcher_active(self, watcher_id: str | int, active: bool) -> None:
        with self.lock:
            self._require_watcher(watcher_id).status = "active" if active else "paused"

    def queue_run(
        self,
        watcher_id: str | int,
        dispatch_source: str = "scheduled",
        window_start: object = None,
        window_end: object = None,
    ) -> int:
        """Queue a pending run of a watcher; returns the run id.

        The default window is the one the real server picks: the current
        period for a scheduled run, `manual_window` for a manual one. A
        datetime is sent as an ISO string; any other value is sent verbatim,
        so tests can queue runs with malformed windows.
        """
        with self.lock:
            watcher = self._require_watcher(watcher_id)
            if dispatch_source == "manual":
                default_start, default_end = self.manual_window(watcher)
            else:
                default_start, default_end = self.current_window(watcher)
            start = default_start if window_start is None else _wire_time(window_start)
            end = default_end if window_end is None else _wire_time(window_end)
            return self.new_watcher_run(watcher, dispatch_source, start, end).id

    def queue_raw_run(
        self,
        pinned_worker_id: str,
        run_type: str = "watcher",
        payload: Any = None,
        *,
        watcher_id: int | None = None,
        automation_id: int | None = None,
    ) -> int:
        """Queue a run whose poll answer carries exactly `payload` (malformed-payload tests).

        Its `approved_input` (what completion validates, e.g. the window) is
        `payload.event.payload` when that is an object, else {}, with the pin set
        to this device. `watcher_id` is the run's own column, independent of the
        payload: the default 0 names no watcher, so such runs never hit the
        duplicate-window 500 (docs/protocol.md, "What a real server does").
        `automation_id` is the column an automation run's exit report needs
        (without it, the report gets the real server's 500).
        """
        with self.lock:
            device = self.ensure_device(pinned_worker_id)
            approved = _approved_from_payload(payload)
            # A real server only hands a device runs pinned to it, so the stored
            # pin is always the claimer's, whatever the payload says.
            approved["device_worker_id"] = device.id
            run = self._new_run(
                run_type=run_type,
                watcher_id=watcher_id if watcher_id is not None else 0,
                device_id=device.id,
                approved_input=approved,
            )
            run.raw = True
            run.raw_payload = copy.deepcopy(payload)
            run.automation_id = automation_id
            return run.id

    def cancel_run(self, run_id: int) -> None:
        """Cancel a pending or running run (its heartbeats then get 409)."""
        with self.lock:
            run = self._runs[run_id]
            if not run.terminal:
                run.status = "cancelled"
                run.completed_at = self.clock()

    def add_automation(
        self,
        prompt: str | None,
        name: str = "Automation",
        slug: str | None = None,
        agent_kind: str | None = "claude-code",
        pinned_worker_id: str | None = None,
        *,
        agent_id: str | None = "default",
        execution_config: dict[str, Any] | None = None,
        extraction_schema: dict[str, Any] | None = None,
        max_attempts: int = 1,
        active: bool = True,
        schedule: str | None = None,
    ) -> str:
        """Create an automation (automation lane); returns its id as a string.

        `agent_id=None` is an automation without an assigned agent: its claims
        carry no `agent_session`. `max_attempts` is the resume budget (0..5).
        """
        if not 0 <= max_attempts <= 5:
            raise ValueError("max_attempts must be between 0 and 5")
        with self.lock:
            device_id = self.ensure_device(pinned_worker_id).id if pinned_worker_id else None
            automation = AutomationRecord(
                id=self._next_automation_id,
                name=name,
                slug=slug if slug is not None else slugify(name),
                prompt=prompt,
                agent_kind=agent_kind,
                agent_id=agent_id,
                execution_config=execution_config,
                extraction_schema=extraction_schema,
                device_id=device_id,
                status="active" if active else "paused",
                max_attempts=max_attempts,
                schedule=schedule,
                created_at=self.clock(),
            )
            self._next_automation_id += 1
            self._automations[automation.id] = automation
            return str(automation.id)

    def queue_automation_run(
        self,
        automation_id: str | int,
        dispatch_source: str = "scheduled",
        window_start: object = None,
        window_end: object = None,
        *,
        event_turn: bool = False,
    ) -> int:
        """Queue a pending automation run; `event_turn` makes it an event turn (no window)."""
        with self.lock:
            automation = self._automations.get(int(automation_id))
            if automation is None:
                raise KeyError(f"no automation {automation_id!r}")
            if dispatch_source == "manual":
                start, end = self._last_full_period(automation.schedule)
            else:
                start, end = self._period_window(automation.schedule)
            approved: dict[str, Any] = {
                "agent_id": automation.agent_id,
                "window_start": start if window_start is None else _wire_time(window_start),
                "window_end": end if window_end is None else _wire_time(window_end),
                "dispatch_source": "event" if event_turn else dispatch_source,
                "version_id": automation.version_id,
                "device_worker_id": automation.device_id,
                "agent_kind": automation.agent_kind,
                "finalize_nudge_count": 0,
            }
            if event_turn:
                approved |= {
                    "trigger_execution": "turn",
                    "trigger_signals": [],
                    "source_fingerprint": secrets.token_hex(8),
                }
            run = self._new_run(
                run_type="automation",
                watcher_id=None,
                device_id=automation.device_id,
                approved_input=approved,
            )
            run.automation_id = automation.id
            return run.id

    def find_automation(self, automation_id: int) -> AutomationRecord | None:
        return self._automations.get(automation_id)

    def automations(self) -> list[AutomationRecord]:
        with self.lock:
            return [copy.deepcopy(a) for a in self._automations.values()]

    def active_run_of_automation(self, automation_id: int) -> RunRecord | None:
        for run in self._runs.values():
            if run.automation_id == automation_id and not run.terminal:
                return run
        return None

    # --------------------------------------------------------- inspection

    def run(self, run_id: int) -> RunRecord:
        with self.lock:
            return copy.deepcopy(self._runs[run_id])

    def runs(self) -> list[RunRecord]:
        with self.lock:
            return [copy.deepcopy(run) for run in self._runs.values()]

    def watcher(self, watcher_id: str | int) -> WatcherRecord:
        with self.lock:
            return copy.deepcopy(self._require_watcher(watcher_id))

    def watchers(self) -> list[WatcherRecord]:
        with self.lock:
            return [copy.deepcopy(w) for w in self._watchers.values()]

    def device(self, worker_id: str) -> DeviceRecord | None:
        with self.lock:
            device = self._devices.get(worker_id)
            return copy.deepcopy(device) if device else None

    def devices(self) -> list[DeviceRecord]:
        with self.lock:
            return [copy.deepcopy(d) for d in self._devices.values()]

    @property
    def requests(self) -> list[RequestLog]:
        """Every request handled, in order, as (method, path, status)."""
        with self.lock:
            return list(self._requests)

    def snapshot_json(self) -> dict[str, Any]:
        """The whole state as JSON-ready data (served at GET /_dev/state)."""
        with self.lock:
            return {
                "user": dataclasses.asdict(self.user),
                "organization": dataclasses.asdict(self.org),
                "devices": [dataclasses.asdict(d) for d in self._devices.values()],
                "watchers": [dataclasses.asdict(w) for w in self._watchers.values()],
                "automations": [dataclasses.asdict(a) for a in self._automations.values()],
                "runs": [dataclasses.asdict(r) for r in self._runs.values()],
                "requests": len(self._requests),
                "faults_injected": dict(self.faults.injected),
            }

    # ------------------------------------------- used by the route handlers
    # (the caller holds `self.lock`; records are returned live, not copied)

    def now(self) -> float:
        return self.clock()

    def token(self, value: str) -> TokenRecord | None:
        return self._tokens.get(value)

    def live_token(self, value: str) -> TokenRecord | None:
        """The token if it exists and has not expired."""
        record = self._tokens.get(value)
        if record is None or (record.expires_at is not None and record.expires_at <= self.clock()):
            return None
        return record

    def raw_payload(self, run: RunRecord) -> Any:
        return copy.deepcopy(run.raw_payload)

    def find_run(self, run_id: int) -> RunRecord | None:
        return self._runs.get(run_id)

    def find_watcher(self, watcher_id: int) -> WatcherRecord | None:
        return self._watchers.get(watcher_id)

    def find_device(self, worker_id: str) -> DeviceRecord | None:
        return self._devices.get(worker_id)

    def live_devices(self) -> list[DeviceRecord]:
        return list(self._devices.values())

    def log_request(self, method: str, path: str, status: int) -> None:
        with self.lock:
            self._requests.append(RequestLog(method, path, status))

    def ensure_device(self, worker_id: str) -> DeviceRecord:
        """The device row for `worker_id`, created (with its check-in watcher) if new."""
        device = self._devices.get(worker_id)
        if device is None:
            device = DeviceRecord(
                id=str(uuid.uuid4()),
                worker_id=worker_id,
                platform=None,
                app_version=None,
                label=None,
                capabilities={},
                created_at=self.clock(),
            )
            self._devices[worker_id] = device
            if self.create_checkin_watcher and self.lane == "watcher":  # a Lobu 1.6.0 habit
                self._add_checkin_watcher(device)
        return device

    def claim_next(
        self,
        device: DeviceRecord,
        worker_id: str,
        eligible: Callable[[RunRecord], bool] | None = None,
    ) -> RunRecord | None:
        """Atomically claim the oldest pending run pinned to `device` that is `eligible`
        (caller holds the lock)."""
        pending = [
            r
            for r in self._runs.values()
            if r.status == "pending"
            and r.device_id == device.id
            and (eligible is None or eligible(r))
        ]
        if not pending:
            return None
        run = min(pending, key=lambda r: r.id)
        now = self.clock()
        run.status = "running"
        run.claimed_by = worker_id
        run.claimed_at = now
        run.last_heartbeat_at = now  # as the real claim does; `heartbeats` tells them apart
        run.claims += 1
        return run

    def active_run_of(self, watcher: WatcherRecord) -> RunRecord | None:
        for run in self._runs.values():
            if run.watcher_id == watcher.id and not run.terminal:
                return run
        return None

    def enqueue_manual(self, watcher: WatcherRecord) -> tuple[RunRecord, bool]:
        """Re-use the watcher's active run, else queue a manual one: (run, created)."""
        active = self.active_run_of(watcher)
        if active is not None:
            return active, False
        start, end = self.manual_window(watcher)
        return self.new_watcher_run(watcher, "manual", start, end), True

    def new_watcher_run(
        self, watcher: WatcherRecord, dispatch_source: str, start: Any, end: Any
    ) -> RunRecord:
        approved = {
            "watcher_id": watcher.id,
            "agent_id": watcher.agent_id,
            "window_start": start,
            "window_end": end,
            "dispatch_source": dispatch_source,
            "version_id": watcher.version_id,
            "device_worker_id": watcher.device_id,
            "agent_kind": watcher.agent_kind,
            "kind": "knowledge",
        }
        return self._new_run(
            run_type="watcher",
            watcher_id=watcher.id,
            device_id=watcher.device_id,
            approved_input=approved,
        )

    def has_window(self, watcher_id: int, window_start: str) -> bool:
        """Is there a stored window for (watcher, start)? The real table's unique key."""
        return (watcher_id, _normal_time(window_start)) in self._windows

    def record_window(self, watcher_id: int, window_start: str, window_end: str) -> None:
        with self.lock:
            self._windows[(watcher_id, _normal_time(window_start))] = window_end

    def reap(self) -> list[int]:
        """Time out running runs whose executor went quiet; returns their ids."""
        with self.lock:
            now = self.clock()
            reaped = []
            for run in self._runs.values():
                message = self._silence(run, now)
                if message is not None:
                    run.status = "timeout"
                    run.error = message
                    run.completed_at = now
                    reaped.append(run.id)
            return reaped

    def current_window(self, watcher: WatcherRecord) -> tuple[str, str]:
        """The period `now` falls in: what a scheduled run gets."""
        return self._period_window(watcher.schedule)

    def _period_window(self, schedule: str | None) -> tuple[str, str]:
        start, period = self._current_period(schedule)
        return _iso_dt(start), _iso_dt(start + period)

    def _last_full_period(self, schedule: str | None) -> tuple[str, str]:
        start, period = self._current_period(schedule)
        return _iso_dt(start - period), _iso_dt(start)

    def manual_window(self, watcher: WatcherRecord) -> tuple[str, str]:
        """The window of a manual run, by the real server's rule.

        The period after the watcher's last stored window, but never later
        than the current period; with no stored window, the last full period.
        So a daily watcher gets the previous day, then today, then today again
        (the duplicate-window 500), and an unscheduled one 7-day windows, the
        second of which lies in the future (docs/protocol.md, "What a real
        server does").
        """
        current, period = self._current_period(watcher.schedule)
        ends = [
            datetime.fromisoformat(end)
            for (watcher_id, _), end in self._windows.items()
            if watcher_id == watcher.id
        ]
        start = min(max(ends), current) if ends else current - period
        return _iso_dt(start), _iso_dt(start + period)

    def _current_period(self, schedule: str | None) -> tuple[datetime, timedelta]:
        now = datetime.fromtimestamp(self.clock(), UTC)
        period = schedule_period(schedule)
        if period == timedelta(hours=1):
            return now.replace(minute=0, second=0, microsecond=0), period
        return now.replace(hour=0, minute=0, second=0, microsecond=0), period

    # ------------------------------------------------------------ private

    def _silence(self, run: RunRecord, now: float) -> str | None:
        if run.status != "running" or run.claimed_at is None:
            return None
        if run.heartbeats > 0 and run.last_heartbeat_at is not None:
            if now - run.last_heartbeat_at > self.heartbeat_timeout:
                return SILENT_HEARTBEAT_ERROR
            return None
        if now - run.claimed_at > self.unheartbeated_timeout:
            return NEVER_HEARTBEAT_ERROR
        return None

    def _require_watcher(self, watcher_id: str | int) -> WatcherRecord:
        watcher = self._watchers.get(int(watcher_id))
        if watcher is None:
            raise KeyError(f"no watcher {watcher_id!r}")
        return watcher

    def _new_watcher(self, **fields: Any) -> WatcherRecord:
        watcher = WatcherRecord(id=self._next_watcher_id, created_at=self.clock(), **fields)
        self._next_watcher_id += 1
        self._watchers[watcher.id] = watcher
        return watcher

    def _new_run(self, **fields: Any) -> RunRecord:
        run = RunRecord(id=self._next_run_id, created_at=self.clock(), **fields)
        self._next_run_id += 1
        self._runs[run.id] = run
        for listener in list(self.run_queued_listeners):
            listener()
        return run

    def _add_checkin_watcher(self, device: DeviceRecord) -> None:
        # What a real server provisions on a new device's first poll
        # (docs/protocol.md, "Poll and claim"):
        # pinned, no agent_kind, nothing queued.
        self._new_watcher(
            name="Daily check-in",
            slug="daily-check-in",
            prompt="Give me a short check-in: what changed since yesterday, what needs me today.",
            agent_kind=None,
            agent_id="default",
            execution_config=None,
            device_id=device.id,
            status="active",
            notification_channel="canvas",
            notification_priority="normal",
            schedule="0 9 * * *",
        )


def _iso_dt(moment: datetime) -> str:
    return iso(moment.timestamp())


def _normal_time(text: str) -> str:
    # The unique key compares timestamps, not their spelling.
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        return text


def slugify(name: str) -> str:
    """The slug a real server derives from a name when none is given."""
    return "-".join(re.findall(r"[a-z0-9]+", name.lower())) or "watcher"


def schedule_period(schedule: str | None) -> timedelta:
    """The window length of a watcher: 7 days unscheduled, else what its cron repeats at.

    Only the shapes the dev server is given are told apart: hourly
    (`M * * * *`), weekly (a day-of-week) and daily (anything else).
    """
    if schedule is None:
        return timedelta(days=7)
    fields = schedule.split()
    if len(fields) == 5 and fields[1] == "*":
        return timedelta(hours=1)
    if len(fields) == 5 and fields[4] != "*":
        return timedelta(days=7)
    return timedelta(days=1)


def _wire_time(value: object) -> object:
    return _iso_dt(value) if isinstance(value, datetime) else value


def _approved_from_payload(payload: Any) -> dict[str, Any]:
    event = payload.get("event") if isinstance(payload, dict) else None
    approved = event.get("payload") if isinstance(event, dict) else None
    return copy.deepcopy(approved) if isinstance(approved, dict) else {}
