"""Runs of either lane: raw runs for malformed-payload tests, claims, cancels, the reaper."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from device_agent.devserver.state.devices import Devices
from device_agent.devserver.state.records import (
    NEVER_HEARTBEAT_ERROR,
    SILENT_HEARTBEAT_ERROR,
    DeviceRecord,
    RunRecord,
)


class Runs(Devices):
    """Every run, whichever lane queued it: claiming, cancelling, timing out."""

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

    def run(self, run_id: int) -> RunRecord:
        with self.lock:
            return copy.deepcopy(self._runs[run_id])

    def runs(self) -> list[RunRecord]:
        with self.lock:
            return [copy.deepcopy(run) for run in self._runs.values()]

    def raw_payload(self, run: RunRecord) -> Any:
        return copy.deepcopy(run.raw_payload)

    def find_run(self, run_id: int) -> RunRecord | None:
        return self._runs.get(run_id)

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


def _approved_from_payload(payload: Any) -> dict[str, Any]:
    event = payload.get("event") if isinstance(payload, dict) else None
    approved = event.get("payload") if isinstance(event, dict) else None
    return copy.deepcopy(approved) if isinstance(approved, dict) else {}
