"""Benchmarks that print figures (not tests): idle footprint, run throughput, journal cost.

    .venv/bin/python bench/bench_agent.py [--idle-seconds 10] [--runs 100]

Linux only for the idle figures (it reads /proc).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The code next to this benchmark is what it measures, in this process and in the agents
# it starts, whatever copy of device_agent the virtual environment has installed.
CHECKOUT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(CHECKOUT))

from device_agent.agent.journal import Journal  # noqa: E402
from device_agent.agent.result import ExitReason, Report  # noqa: E402
from device_agent.devserver import DevServer, DevState  # noqa: E402 - after the path

WORKER = "linux:bench"


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def checkout_env() -> dict[str, str]:
    """This environment, with no DEVICE_AGENT_* setting, running the checkout's code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICE_AGENT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(CHECKOUT), env.get("PYTHONPATH"))))
    return env


def agent_env(home: str, url: str, token: str, worker: str = WORKER) -> dict[str, str]:
    env = checkout_env()
    env.update(
        DEVICE_AGENT_HOME=home,
        DEVICE_AGENT_SERVER=url,
        DEVICE_AGENT_TOKEN=token,
        DEVICE_AGENT_WORKER_ID=worker,
    )
    return env


@contextmanager
def running_agent(home: str, url: str, token: str) -> Iterator[subprocess.Popen[bytes]]:
    """`device-agent run` as a separate process, stopped on the way out."""
    agent = subprocess.Popen(
        [sys.executable, "-m", "device_agent", "run"],
        env=agent_env(home, url, token),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield agent
    finally:
        agent.terminate()
        agent.wait()


def wait_until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit("benchmark timed out")
        time.sleep(0.01)


def bench_idle(seconds: float) -> None:
    state = DevState(create_checkin_watcher=False, next_poll_seconds=10)
    token = state.add_token()
    with (
        tempfile.TemporaryDirectory() as home,
        DevServer(state).running_in_thread() as server,
        running_agent(home, server.url, token) as agent,
    ):
        wait_until(lambda: any(r.path == "/api/workers/poll" for r in state.requests), 30)
        cpu0, t0 = proc_cpu_seconds(agent.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = proc_cpu_seconds(agent.pid), time.monotonic()
        rss = proc_rss_mib(agent.pid)
        polls = sum(1 for r in state.requests if r.path == "/api/workers/poll")
    print(
        f"idle agent: {100 * (cpu1 - cpu0) / (t1 - t0):.2f}% of one core over {t1 - t0:.0f} s, "
        f"RSS {rss:.1f} MiB, {polls} polls (server asks every 10 s)"
    )


def bench_throughput(runs: int, concurrency: int) -> None:
    state = DevState(create_checkin_watcher=False, next_poll_seconds=0.2)
    token = state.add_token()
    ids = [
        state.queue_run(
            state.add_watcher(
                prompt=f"bench {n}", name=f"bench {n}", agent_kind="demo", pinned_worker_id=WORKER
            )
        )
        for n in range(runs)
    ]
    with tempfile.TemporaryDirectory() as home, DevServer(state).running_in_thread() as server:
        config = Path(home) / "config" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text(f"concurrency = {concurrency}\n")
        started = time.monotonic()
        with running_agent(home, server.url, token):
            wait_until(lambda: all(state.run(i).status == "completed" for i in ids), 300)
            elapsed = time.monotonic() - started
    print(
        f"throughput: {runs} demo runs at concurrency {concurrency} in {elapsed:.1f} s "
        f"= {runs / elapsed:.1f} runs/s (process start to last completion, CLI spawn included)"
    )


def bench_journal(rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp) / "j.sqlite3")
        report = Report("x" * 2000, None, 10, 0, None, ExitReason.OK)
        started = time.perf_counter()
        for run_id in range(rows):
            journal.record_claim(
                "s",
                run_id,
                run_type="watcher",
                watcher_id="1",
                watcher_name="w",
                agent_kind="demo",
                payload_digest="d",
            )
            journal.record_result("s", run_id, report)
            journal.settle("s", run_id, state="acknowledged", answer="completed", message=None)
        elapsed = time.perf_counter() - started
        journal.close()
    print(
        f"journal: {1000 * elapsed / rows:.2f} ms per run lifecycle (3 fsync'd transactions), "
        f"{rows} runs"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle-seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    bench_journal(500)
    bench_throughput(args.runs, 1)
    bench_throughput(args.runs, 4)
    bench_idle(args.idle_seconds)


if __name__ == "__main__":
    main()
