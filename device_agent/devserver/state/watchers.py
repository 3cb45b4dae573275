"""Watchers (the watcher lane), their runs and the windows those runs store."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from device_agent.devserver.state.devices import Devices
from device_agent.devserver.state.periods import (
    current_period,
    iso_dt,
    normal_time,
    period_window,
    slugify,
    wire_time,
)
from device_agent.devserver.state.records import RunRecord, WatcherRecord


class Watchers(Devices):
    """Watchers, their runs, and the stored windows (the real `insight_windows` table)."""

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
            start = default_start if window_start is None else wire_time(window_start)
            end = default_end if window_end is None else wire_time(window_end)
            return self.new_watcher_run(watcher, dispatch_source, start, end).id

    def watcher(self, watcher_id: str | int) -> WatcherRecord:
        with self.lock:
            return copy.deepcopy(self._require_watcher(watcher_id))

    def watchers(self) -> list[WatcherRecord]:
        with self.lock:
            return [copy.deepcopy(w) for w in self._watchers.values()]

    def find_watcher(self, watcher_id: int) -> WatcherRecord | None:
        return self._watchers.get(watcher_id)

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
        return (watcher_id, normal_time(window_start)) in self._windows

    def record_window(self, watcher_id: int, window_start: str, window_end: str) -> None:
        with self.lock:
            self._windows[(watcher_id, normal_time(window_start))] = window_end

    def windows_of(self, watcher_id: int) -> list[tuple[str, str]]:
        """The stored windows of a watcher as (start, end), latest first."""
        with self.lock:
            found = [
                (start, end) for (wid, start), end in self._windows.items() if wid == watcher_id
            ]
        return sorted(found, reverse=True)

    def current_window(self, watcher: WatcherRecord) -> tuple[str, str]:
        """The period `now` falls in: what a scheduled run gets."""
        return period_window(self.clock(), watcher.schedule)

    def manual_window(self, watcher: WatcherRecord) -> tuple[str, str]:
        """The window of a manual run, by the real server's rule.

        The period after the watcher's last stored window, but never later
        than the current period; with no stored window, the last full period.
        So a daily watcher gets the previous day, then today, then today again
        (the duplicate-window 500), and an unscheduled one 7-day windows, the
        second of which lies in the future (docs/protocol.md, "What a real
        server does").
        """
        current, period = current_period(self.clock(), watcher.schedule)
        ends = [
            datetime.fromisoformat(end)
            for (watcher_id, _), end in self._windows.items()
            if watcher_id == watcher.id
        ]
        start = min(max(ends), current) if ends else current - period
        return iso_dt(start), iso_dt(start + period)

    def _require_watcher(self, watcher_id: str | int) -> WatcherRecord:
        watcher = self._watchers.get(int(watcher_id))
        if watcher is None:
            raise KeyError(f"no watcher {watcher_id!r}")
        return watcher
