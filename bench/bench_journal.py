"""Long-run figures (issue 27): the journal's size and the agent's memory after thousands of
runs with large outputs, and the memory of an agent restarted on that journal.

    .venv/bin/python bench/bench_journal.py [--runs 300] [--output-kib 1024] [--long]

The agent runs a `command` profile that prints a file of `--output-kib` KiB, with the
journal's default retention, against the dev server; `--long` is 5,000 runs of 3 MiB
(several minutes, by hand). bench/run.py reports the same figures next to the others.
Figures are measurements, never assertions. Linux only (it reads /proc).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench_agent import agent_env, proc_rss_mib  # this directory is on sys.path as a script

from device_agent.agent.journal import disk_bytes
from device_agent.devserver import DevServer, DevState

WORKER = "headless:bench-journal"
KIND = "command"
LONG_RUNS, LONG_OUTPUT_KIB = 5000, 3072
BATCH = 200  # runs queued at a time: the dev server keeps a record of each


@dataclass
class LongRun:
    runs: int
    output_kib: int
    ms_per_run: float  # first claim to last result, per run
    journal_mib: float  # the journal and its WAL on disk after the runs
    journal_runs: int  # rows it keeps
    rss_warm_mib: float  # after the first few runs
    rss_after_mib: float  # after all of them
    restart_peak_rss_mib: float  # an agent started on that journal, up to its first poll
    fresh_peak_rss_mib: float  # an agent started on an empty journal, likewise


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_until(predicate: Callable[[], Any], timeout: float = 600.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit("benchmark timed out: is the agent running?")
        time.sleep(0.01)
    return value


def make_home(root: Path, output_kib: int) -> Path:
    """An agent home whose default agent prints `output_kib` KiB of text lines."""
    root.mkdir(parents=True)
    printed = root / "output.txt"
    line = "the quick brown fox jumps over the lazy dog, again and again and again\n"
    text = line * (output_kib * 1024 // len(line) + 1)
    printed.write_text(text[: output_kib * 1024])
    executors = root / "home" / "config" / "executors"
    executors.mkdir(parents=True)
    (executors / f"{KIND}.toml").write_text(f"argv = {json.dumps(['cat', str(printed)])}\n")
    (executors.parent / "config.toml").write_text(f'default_agent = "{KIND}"\n')
    return root / "home"


@contextmanager
def agent(home: Path, url: str, token: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "device_agent", "run"],
        env=agent_env(str(home), url, token, WORKER),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=120)


def polls(state: DevState) -> int:
    device = state.device(WORKER)
    return device.polls if device is not None else 0


def run_batch(state: DevState, count: int) -> None:
    """Queue `count` runs and wait for all to end; their outputs are dropped from the dev
    server's records as they end, so that only the agent holds what it holds."""
    ids = {
        state.queue_run(state.add_watcher(prompt="p", agent_kind=KIND, pinned_worker_id=WORKER))
        for _ in range(count)
    }

    def all_done() -> bool:
        with state.lock:
            runs = [state._runs[i] for i in ids]
            for run in runs:
                if run.terminal:
                    run.output = None
            failed = [r.error for r in runs if r.terminal and r.status != "completed"]
            if failed:
                raise SystemExit(f"runs did not complete: {failed[:3]}")
            return all(r.terminal for r in runs)

    wait_until(all_done)


def long_run(runs: int, output_kib: int) -> LongRun:
    state = DevState(create_checkin_watcher=False, next_poll_seconds=0.05)
    token = state.add_token()
    with DevServer(state).running_in_thread() as server, tempfile.TemporaryDirectory() as tmp:
        home = make_home(Path(tmp, "long"), output_kib)
        with agent(home, server.url, token) as process:
            wait_until(lambda: polls(state))
            run_batch(state, 10)
            warm = proc_rss_mib(process.pid)
            started = time.monotonic()
            for done in range(0, runs, BATCH):
                run_batch(state, min(BATCH, runs - done))
            spent = time.monotonic() - started
            after = proc_rss_mib(process.pid)
        journal = home / "state" / "journal.sqlite3"
        journal_mib = disk_bytes(journal) / 2**20
        kept = _rows(journal)
        restart = _start_up_peak(state, home, server.url, token)
        fresh = _start_up_peak(state, make_home(Path(tmp, "fresh"), 1), server.url, token)
    return LongRun(
        runs, output_kib, 1000 * spent / runs, journal_mib, kept, warm, after, restart, fresh
    )


def _start_up_peak(state: DevState, home: Path, url: str, token: str) -> float:
    """Peak RSS of an agent from its start to its first poll (it has read what it reads of
    the journal by then)."""
    seen = polls(state)
    with agent(home, url, token) as process:
        wait_until(lambda: polls(state) > seen)
        return peak_rss_mib(process.pid)


def _rows(journal: Path) -> int:
    import sqlite3

    db = sqlite3.connect(journal)
    try:
        return int(db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--output-kib", type=int, default=1024)
    parser.add_argument(
        "--long", action="store_true", help=f"{LONG_RUNS} runs of {LONG_OUTPUT_KIB} KiB"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs, kib = (LONG_RUNS, LONG_OUTPUT_KIB) if args.long else (args.runs, args.output_kib)
    figures = long_run(runs, kib)
    if args.json:
        print(json.dumps(asdict(figures)))
        return
    for name, value in asdict(figures).items():
        print(f"{name:<24} {value:10.1f}" if isinstance(value, float) else f"{name:<24} {value:8}")


if __name__ == "__main__":
    main()
