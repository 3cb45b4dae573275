"""A device's requests to the dev server (device_agent.devserver), over real loopback HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from device_agent.devserver import DevServer, DevState

WID = "linux:box"


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


def queue_and_claim(state: DevState, client: httpx.Client, **queue: Any) -> int:
    """Queue a run of a new watcher and claim it with a poll; its run id."""
    run_id = state.queue_run(add_watcher(state), **queue)
    answer = poll(client)
    assert answer.json()["run_id"] == run_id
    return run_id


def poll_requests(state: DevState) -> int:
    """Poll requests the dev server answered (one per request, however long it was held)."""
    return sum(1 for request in state.requests if request.path == "/api/workers/poll")
