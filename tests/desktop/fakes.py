"""A stand-in for the agent behind the control socket."""

from __future__ import annotations

from typing import Any

from device_agent.desktop.control_client import Target


class FakeHandler:
    """Records what the socket asked for; its status is whatever the test sets."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.state: dict[str, Any] = {"state": "idle", "runs": []}

    def status(self) -> dict[str, Any]:
        self.calls.append(("status",))
        return self.state

    def poll_now(self) -> None:
        self.calls.append(("poll_now",))

    def pause(self) -> None:
        self.calls.append(("pause",))

    def resume(self) -> None:
        self.calls.append(("resume",))

    def resume_past_limit(self) -> dict[str, Any]:
        self.calls.append(("resume_past_limit",))
        return {"past_limit": True, "reached": None}

    def targets(self) -> list[Target]:
        return [Target("12", "watcher", "Inbox digest"), Target("a1", "automation", "Nightly")]

    async def trigger(self, target_id: str, lane: str | None) -> dict[str, Any]:
        self.calls.append(("trigger", target_id, str(lane)))
        return {"run_id": 7, "already_queued": False}
