"""Long-poll figures (not tests): pick-up latency of a queued run, and idle polls per minute.

    .venv/bin/python bench/bench_longpoll.py [--runs 20] [--idle-seconds 60]

(a) With the agent idle and holding a poll, a run is queued; its pick-up latency
    is the time from queueing to the server's claim (the server's own clock).
    The baseline is a bare HTTP client holding the same poll on the same
    loopback server, measured in the same process: the floor (the dev server
    looks for a queued run every 50 ms while it holds a poll).
(b) Idle poll requests per minute with a 25 s hold, and with long-poll off
    (`wait_seconds = 0`, the server's idle answer of 10 s between polls).

Runs against the dev server in automation mode, with the bundled offline
demo agent (`demo-automation`) as the device's default agent.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from bench_agent import agent_env  # this directory is on sys.path when run as a script

from device_agent.devserver import DevServer, DevState

WORKER = "headless:bench-longpoll"
BASELINE_WORKER = "headless:bench-baseline"
KIND = "demo-automation"
SETTLE = 0.05  # let a poll that just arrived be held before queueing (a bench may sleep)


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit("timed out: is the agent running?")
        time.sleep(0.002)
    return value


@contextmanager
def agent(url: str, token: str, *, wait_seconds: int) -> Iterator[None]:
    with tempfile.TemporaryDirectory() as home:
        config = Path(home, "config", "config.toml")
        config.parent.mkdir(parents=True)
        config.write_text(f'default_agent = "{KIND}"\nwait_seconds = {wait_seconds}\n')
        process = subprocess.Popen(
            [sys.executable, "-m", "device_agent", "run"],
            env=agent_env(home, url, token, WORKER),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield
        finally:
            process.terminate()
            process.wait(timeout=60)


def polls(state: DevState, worker: str) -> int:
    """Claim checks for `worker`: the dev server checks a held poll again every 50 ms."""
    device = state.device(worker)
    return device.polls if device is not None else 0


def poll_requests(state: DevState) -> int:
    """Poll requests answered (one per HTTP request, however long it was held)."""
    return sum(1 for r in state.requests if r.path == "/api/workers/poll")


def agent_pickups(state: DevState, url: str, token: str, runs: int) -> list[float]:
    latencies = []
    with agent(url, token, wait_seconds=25):
        for _ in range(runs):
            seen = polls(state, WORKER)
            wait_until(lambda seen=seen: polls(state, WORKER) > seen)  # the next poll is in
            time.sleep(SETTLE)
            automation = state.add_automation("Summarise", agent_kind=KIND, pinned_worker_id=WORKER)
            queued = time.time()
            run_id = state.queue_automation_run(automation)
            claimed = wait_until(lambda run_id=run_id: state.run(run_id).claimed_at)
            latencies.append(claimed - queued)
            wait_until(lambda run_id=run_id: state.run(run_id).terminal)
    return latencies


def baseline_pickups(state: DevState, url: str, token: str, runs: int) -> list[float]:
    body = {
        "worker_id": BASELINE_WORKER,
        "platform": "headless",
        "app_version": "1.0.0",
        "capabilities": {"automations.execute": True},
        "agent_kinds": [KIND],
        "capacity_available": 1,
        "wait_seconds": 25,
    }
    latencies = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        # Register the device with a poll the server need not hold (nothing is queued yet).
        http.post("/api/workers/poll", json={**body, "wait_seconds": 0}, timeout=40)
        for _ in range(runs):
            held = threading.Thread(
                target=http.post, args=("/api/workers/poll",), kwargs={"json": body, "timeout": 40}
            )
            seen = polls(state, BASELINE_WORKER)
            held.start()
            wait_until(lambda seen=seen: polls(state, BASELINE_WORKER) > seen)
            time.sleep(SETTLE)
            automation = state.add_automation(
                "Summarise", agent_kind=KIND, pinned_worker_id=BASELINE_WORKER
            )
            queued = time.time()
            run_id = state.queue_automation_run(automation)
            claimed = wait_until(lambda run_id=run_id: state.run(run_id).claimed_at)
            latencies.append(claimed - queued)
            held.join()
    return latencies


def idle_polls_per_minute(seconds: float, *, wait_seconds: int) -> float:
    state = DevState(create_checkin_watcher=False, lane="automation")
    token = state.add_token()
    with (
        DevServer(state).running_in_thread() as server,
        agent(server.url, token, wait_seconds=wait_seconds),
    ):
        wait_until(lambda: poll_requests(state) >= 1)
        first = poll_requests(state)
        time.sleep(seconds)
        return (poll_requests(state) - first) * 60.0 / seconds


def describe(name: str, latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"{name:<28} p50 {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   (n={len(ms)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    args = parser.parse_args()

    state = DevState(create_checkin_watcher=False, lane="automation")
    token = state.add_token()
    with DevServer(state).running_in_thread() as server:
        base = baseline_pickups(state, server.url, token, args.runs)
        ours = agent_pickups(state, server.url, token, args.runs)
    print("(a) pick-up latency of a run queued while a poll is held (loopback)")
    print("  " + describe("baseline (bare HTTP client)", base))
    print("  " + describe("device-agent", ours))
    print(f"(b) idle poll requests per minute over {args.idle_seconds:g} s")
    held = idle_polls_per_minute(args.idle_seconds, wait_seconds=25)
    plain = idle_polls_per_minute(args.idle_seconds, wait_seconds=0)
    print(f"  with a 25 s hold: {held:5.2f}/min   without (wait_seconds=0): {plain:5.2f}/min")


if __name__ == "__main__":
    main()
