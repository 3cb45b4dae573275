"""What every area of the dev server's state shares: the lock, the clock, the tables."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from device_agent.devserver.faults import FaultInjector
from device_agent.devserver.oauth import OAuthStore
from device_agent.devserver.state.records import (
    CHILD_TOKEN_ERAS,
    LANES,
    AutomationRecord,
    ChildTokenEra,
    ConversationRecord,
    DeviceRecord,
    Lane,
    McpCall,
    Organization,
    RequestLog,
    RunRecord,
    SamplePins,
    TokenRecord,
    TranscriptRecord,
    User,
    WatcherRecord,
)


class StateCore:
    """The tables and the one re-entrant lock; each area of `DevState` builds on this."""

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
        child_tokens: ChildTokenEra = "current",
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
        warm-up, so the suite stays fast).

        `child_tokens` is how `mint-child-token` answers: "current" (the default) mints
        for `headless`, `macos` and `chrome-extension`, bound to the asked worker_id,
        valid 90 days; "1.6.0" as Lobu 1.6.0 does: only `chrome-extension` may mint
        (others get 400 `platform '<p>' is not eligible for child-token mint`), the
        worker_id asked for is ignored for a random UUID, and the token does not expire."""
        if lane not in LANES:
            raise ValueError(f"unknown lane {lane!r}; expected one of {LANES}")
        if child_tokens not in CHILD_TOKEN_ERAS:
            raise ValueError(
                f"unknown child_tokens {child_tokens!r}; expected one of {CHILD_TOKEN_ERAS}"
            )
        self.child_tokens: ChildTokenEra = child_tokens
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
        self.holding = True  # False: idle polls are answered at once (`release_held_polls`)
        self.warming_polls = 0  # polls held by the warm-up right now
        self.faults = FaultInjector()
        self.oauth = OAuthStore()
        self.user = User(id="usr_dev0001", email="dev@localhost", name="Dev User")
        self.org = Organization(id="org_dev0001", slug="dev", name="Dev workspace")
        self._tokens: dict[str, TokenRecord] = {}
        self._devices: dict[str, DeviceRecord] = {}  # by worker_id: there is one user
        self._watchers: dict[int, WatcherRecord] = {}
        self._automations: dict[int, AutomationRecord] = {}
        self._conversations: dict[str, ConversationRecord] = {}  # device chats (automation lane)
        self.min_app_version: str | None = None  # the operator's client floor (automation lane)
        self.public_url = "http://127.0.0.1"  # set by DevServer once it listens
        self._runs: dict[int, RunRecord] = {}
        # The unique key of the real `insight_windows` table: (watcher, window start).
        self._windows: dict[tuple[int, str], str] = {}  # -> window end
        self._requests: list[RequestLog] = []
        self._mcp_calls: list[McpCall] = []
        self._transcripts: dict[int, TranscriptRecord] = {}  # by run id (state/transcripts.py)
        self.samples = SamplePins()  # what `dev-server` seeded (state/samples.py)
        self.on_notice: Callable[[str], None] = lambda message: None  # the server's console
        self._next_watcher_id = 1
        self._next_automation_id = 1
        self._next_conversation_id = 1
        self._next_run_id = 1

    def start_warmup(self, seconds: float | None = None) -> None:
        """Hold polls for `seconds` from now (default: the configured warm-up), as after a boot."""
        with self.lock:
            span = self.warmup_seconds if seconds is None else seconds
            self.warm_until = time.monotonic() + span

    def warmup_left(self) -> float:
        """Seconds until polls are no longer held (0 once warm)."""
        with self.lock:
            return max(0.0, self.warm_until - time.monotonic())

    @property
    def requests(self) -> list[RequestLog]:
        """Every request handled, in order, as (method, path, status)."""
        with self.lock:
            return list(self._requests)

    def log_request(self, method: str, path: str, status: int) -> None:
        with self.lock:
            self._requests.append(RequestLog(method, path, status))

    @property
    def mcp_calls(self) -> list[McpCall]:
        """Every JSON-RPC request the MCP stand-in received, in order, with its token."""
        with self.lock:
            return list(self._mcp_calls)

    def log_mcp_call(self, call: McpCall) -> None:
        with self.lock:
            self._mcp_calls.append(call)

    # ------------------------------------------- used by the route handlers
    # (the caller holds `self.lock`; records are returned live, not copied)

    def now(self) -> float:
        return self.clock()

    def _new_watcher(self, **fields: Any) -> WatcherRecord:
        watcher = WatcherRecord(id=self._next_watcher_id, created_at=self.clock(), **fields)
        self._next_watcher_id += 1
        self._watchers[watcher.id] = watcher
        return watcher

    def release_held_polls(self) -> None:
        """Answer every held poll now, and hold none from now on: what the demo does before it
        stops its agent, which otherwise gives a poll in flight its drain grace to answer."""
        with self.lock:
            self.holding = False
            for listener in list(self.run_queued_listeners):
                listener()

    def _new_run(self, **fields: Any) -> RunRecord:
        run = RunRecord(id=self._next_run_id, created_at=self.clock(), **fields)
        self._next_run_id += 1
        self._runs[run.id] = run
        for listener in list(self.run_queued_listeners):
            listener()
        return run
