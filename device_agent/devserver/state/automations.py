"""Automations (the automation lane) and their runs."""

from __future__ import annotations

import copy
import secrets
from typing import Any

from device_agent.devserver.state.devices import Devices
from device_agent.devserver.state.periods import last_full_period, period_window, slugify, wire_time
from device_agent.devserver.state.records import AutomationRecord, RunRecord


class Automations(Devices):
    """Automations and their runs, queued with the windows a real server gives them."""

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
                start, end = last_full_period(self.clock(), automation.schedule)
            else:
                start, end = period_window(self.clock(), automation.schedule)
            approved: dict[str, Any] = {
                "agent_id": automation.agent_id,
                "window_start": start if window_start is None else wire_time(window_start),
                "window_end": end if window_end is None else wire_time(window_end),
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
