"""Helpers the dev server's tests share: a settable clock and the device's requests."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from device_agent.devserver import DevServer, DevState

WID = "linux:box"
T0 = datetime(2025, 6, 15, 12, 30, tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def client_for(server: DevServer, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=5.0)


def poll(client: httpx.Client, worker_id: str = WID, **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"worker_id": worker_id, "platform": "linux", "app_version": "0.1.0"}
    body |= {"label": "box", "capabilities": {}, **extra}
    return client.post("/api/workers/poll", json=body)


def heartbeat(client: httpx.Client, run_id: int, worker_id: str = WID) -> httpx.Response:
    return client.post("/api/workers/heartbeat", json={"run_id": run_id, "worker_id": worker_id})


def complete(client: httpx.Client, run_id: int | str, **body: Any) -> httpx.Response:
    report = {
        "worker_id": WID,
        "output": "all good",
        "error": None,
        "duration_ms": 1234,
        "exit_code": 0,
        "exit_signal": None,
        "exit_reason": "ok",
    } | body
    return client.post(f"/api/workers/me/runs/{run_id}/complete-watcher", json=report)


def add_watcher(state: DevState, worker_id: str = WID, **kwargs: Any) -> str:
    return state.add_watcher(
        "Summarise my inbox", name="Inbox digest", pinned_worker_id=worker_id, **kwargs
    )


def claim(state: DevState, client: httpx.Client, **queue: Any) -> int:
    run_id = state.queue_run(add_watcher(state), **queue)
    answer = poll(client)
    assert answer.json()["run_id"] == run_id
    return run_id


def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
