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

The areas live in their own modules (`devices`, `watchers`, `automations`,
`chats`, `runs`, `samples`, over the shared tables of `core`); `DevState` is the one entry point.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from device_agent.devserver.state.automations import Automations
from device_agent.devserver.state.chats import Chats
from device_agent.devserver.state.periods import schedule_period, slugify
from device_agent.devserver.state.records import (
    CHILD_TOKEN_ERAS,
    DEFAULT_SCOPES,
    LANES,
    LOCAL_INIT_SCOPES,
    NEVER_HEARTBEAT_ERROR,
    ONLINE_WINDOW_SECONDS,
    SILENT_HEARTBEAT_ERROR,
    AutomationRecord,
    ChildTokenEra,
    ConversationRecord,
    DeviceRecord,
    Lane,
    McpCall,
    Organization,
    RequestLog,
    RunRecord,
    RunStatus,
    SamplePins,
    TokenRecord,
    TranscriptRecord,
    User,
    WatcherRecord,
    iso,
)
from device_agent.devserver.state.runs import Runs
from device_agent.devserver.state.samples import SampleKind, Samples
from device_agent.devserver.state.transcripts import Transcripts
from device_agent.devserver.state.watchers import Watchers

__all__ = [
    "CHILD_TOKEN_ERAS",
    "DEFAULT_SCOPES",
    "LANES",
    "LOCAL_INIT_SCOPES",
    "NEVER_HEARTBEAT_ERROR",
    "ONLINE_WINDOW_SECONDS",
    "SILENT_HEARTBEAT_ERROR",
    "AutomationRecord",
    "ChildTokenEra",
    "ConversationRecord",
    "DevState",
    "DeviceRecord",
    "Lane",
    "McpCall",
    "Organization",
    "RequestLog",
    "RunRecord",
    "RunStatus",
    "SampleKind",
    "SamplePins",
    "TokenRecord",
    "TranscriptRecord",
    "User",
    "WatcherRecord",
    "iso",
    "schedule_period",
    "slugify",
]


class DevState(Watchers, Automations, Chats, Runs, Samples, Transcripts):
    """Everything the dev server knows. Safe to use from any thread."""

    def snapshot_json(self) -> dict[str, Any]:
        """The whole state as JSON-ready data (served at GET /_dev/state)."""
        with self.lock:
            return {
                "user": dataclasses.asdict(self.user),
                "organization": dataclasses.asdict(self.org),
                "devices": [dataclasses.asdict(d) for d in self._devices.values()],
                "watchers": [dataclasses.asdict(w) for w in self._watchers.values()],
                "automations": [dataclasses.asdict(a) for a in self._automations.values()],
                "conversations": [dataclasses.asdict(c) for c in self._conversations.values()],
                "runs": [dataclasses.asdict(r) for r in self._runs.values()],
                "transcripts": [dataclasses.asdict(t) for t in self._transcripts.values()],
                "requests": len(self._requests),
                "faults_injected": dict(self.faults.injected),
            }
