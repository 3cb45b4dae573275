"""The figures a person notices, in one command, each next to a baseline measured in the same run.

    .venv/bin/python bench/run.py [--runs 100] [--idle-seconds 10] [--repeat 5] [--json]
                                  [--long-runs 300] [--long-output-kib 1024] [--long]

The baseline of the per-run figures is bench/minimal_loop.py (poll -> heartbeat
-> spawn `cat` -> complete, no journal) against the same dev server; the
start-up figures compare with `python -c pass` and a bare httpx post. The
agent runs with a `command` profile running `cat`. Figures are printed as a
table (figure / device-agent / baseline / ratio) or as JSON. Linux only (it
reads /proc). Figures are measurements, never assertions.

The long-run figures (issue 27, bench/bench_journal.py) run `--long-runs` runs
printing `--long-output-kib` KiB each: the journal's size after them, the RSS
after them next to the RSS after the first few, and the peak RSS of an agent
started on that journal next to one started on an empty journal. `--long` is
5,000 runs of 3 MiB (several minutes, by hand).
"""

from __future__ import annotations

import argparse
import compileall
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench_agent import agent_env, checkout_env, proc_cpu_seconds, proc_rss_mib
from bench_journal import LONG_OUTPUT_KIB, LONG_RUNS, long_run
from bench_longpoll import agent_pickups, baseline_pickups

import device_agent
from device_agent.devserver import DevServer, DevState

HERE = Path(__file__).parent


def agent_command() -> list[str]:
    """How users start the agent: the installed `device-agent` script (what the service runs,
    too), else `python -m device_agent` from a checkout that was never installed. Either
    runs this checkout's code (`bench_agent.checkout_env`), not an installed copy's."""
    script = Path(sys.executable).parent / "device-agent"
    if os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "device_agent"]


AGENT = agent_command()
WORKER = "headless:bench"
BASELINE_WORKER = "headless:bench-minimal"
KIND = "command"
PROMPT = "bench prompt " * 20
CAT = shutil.which("cat") or "/bin/cat"


@dataclass
class Figure:
    name: str
    unit: str
    agent: float
    baseline: float | None  # None: no meaningful baseline (a target, not a ratio)
    target: str

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline:
            return None
        return self.agent / self.baseline


def wait_until(predicate: Callable[[], Any], timeout: float = 120.0, step: float = 0.001) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit("benchmark timed out")
        time.sleep(step)
    return value


def proc_peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def p50(values: list[float]) -> float:
    return statistics.median(values)


@contextmanager
def agent_home(argv: list[str], **settings: object) -> Iterator[str]:
    """A home with a `command` profile running `argv` and `settings` in config.toml."""
    with tempfile.TemporaryDirectory() as home:
        config = Path(home, "config")
        (config / "executors").mkdir(parents=True)
        (config / "executors" / "command.toml").write_text(f"argv = {json.dumps(argv)}\n")
        settings = {"default_agent": KIND, **settings}
        lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
        (config / "config.toml").write_text("\n".join(lines) + "\n")
        yield home


@contextmanager
def process(
    argv: list[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def agent_process(home: str, url: str, token: str) -> Any:
    return process([*AGENT, "run"], agent_env(home, url, token, WORKER))


def minimal_process(url: str, token: str, concurrency: int, journal: str | None = None) -> Any:
    """The baseline loop (bench/minimal_loop.py); with `journal`, keeping its two records."""
    argv = [sys.executable, str(HERE / "minimal_loop.py"), url, token, BASELINE_WORKER]
    return process([*argv, str(concurrency), *([journal] if journal else [])])


def queue_runs(state: DevState, worker: str, count: int, prompt: str = PROMPT) -> list[int]:
    return [
        state.queue_run(
            state.add_watcher(
                prompt=prompt, name=f"bench {n}", agent_kind=KIND, pinned_worker_id=worker
            )
        )
        for n in range(count)
    ]


@dataclass
class RunFigures:
    elapsed: float  # first claim to last completion
    cycle_p50: float  # p50 between consecutive completions
    cpu_per_run: float  # the loop's own CPU, children excluded


def measure_runs(state: DevState, pid: int, worker: str, runs: int, warmup: int = 3) -> RunFigures:
    warm = queue_runs(state, worker, warmup)
    wait_until(lambda: all(state.run(i).terminal for i in warm))
    cpu0 = proc_cpu_seconds(pid)
    ids = queue_runs(state, worker, runs)
    wait_until(lambda: all(state.run(i).terminal for i in ids), timeout=600, step=0.01)
    cpu1 = proc_cpu_seconds(pid)
    done = sorted(state.run(i).completed_at or 0.0 for i in ids)
    first_claim = min(state.run(i).claimed_at or 0.0 for i in ids)
    failed = [i for i in ids if state.run(i).status != "completed"]
    if failed:
        raise SystemExit(f"runs did not complete: {[state.run(i).error for i in failed[:3]]}")
    gaps = [b - a for a, b in itertools.pairwise(done)]
    return RunFigures(done[-1] - first_claim, p50(gaps), (cpu1 - cpu0) / runs)


def cat_spawn_seconds(times: int = 30) -> float:
    """p50 of spawning `cat`, feeding it the prompt and reaping it: what no agent can avoid."""
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        subprocess.run([CAT], input=PROMPT.encode(), capture_output=True, check=True)
        spent.append(time.perf_counter() - started)
    return p50(spent)


def bench_runs(runs: int, concurrency: int, spawn: float) -> list[Figure]:
    state = DevState(create_checkin_watcher=False, next_poll_seconds=0.2)
    token = state.add_token()
    with DevServer(state).running_in_thread() as server:
        with minimal_process(server.url, token, concurrency) as minimal:
            base = measure_runs(state, minimal.pid, BASELINE_WORKER, runs)
        with (
            tempfile.TemporaryDirectory() as scratch,
            minimal_process(server.url, token, concurrency, f"{scratch}/journal") as minimal,
        ):
            journaled = measure_runs(state, minimal.pid, BASELINE_WORKER, runs)
        with (
            agent_home(["cat"], concurrency=concurrency) as home,
            agent_process(home, server.url, token) as agent,
        ):
            ours = measure_runs(state, agent.pid, WORKER, runs)
    figures = [
        Figure(
            f"throughput, concurrency {concurrency}",
            "runs/s",
            runs / ours.elapsed,
            runs / base.elapsed,
            "≥ 0.7× baseline",
        ),
        Figure(
            f"throughput, concurrency {concurrency}, vs a loop that journals",
            "runs/s",
            runs / ours.elapsed,
            runs / journaled.elapsed,
            "(for reading)",
        ),
    ]
    if concurrency == 1:
        figures += [
            Figure(
                "agent time per run beyond the CLI, p50",
                "ms",
                1000 * (ours.cycle_p50 - spawn),
                1000 * (base.cycle_p50 - spawn),
                "≤ 10 ms",
            ),
            Figure(
                "CPU per run, CLI excluded",
                "ms",
                1000 * ours.cpu_per_run,
                1000 * base.cpu_per_run,
                "(for reading)",
            ),
        ]
    return figures


def bench_big_output(mib: int) -> Figure:
    """Peak RSS of the agent while a CLI prints `mib` MiB (the agent keeps its output cap)."""
    state = DevState(create_checkin_watcher=False, next_poll_seconds=0.2)
    token = state.add_token()
    printer = [sys.executable, "-c", f"import sys; sys.stdout.write('x' * ({mib} << 20))"]
    with (
        DevServer(state).running_in_thread() as server,
        agent_home(printer) as home,
        agent_process(home, server.url, token) as agent,
    ):
        wait_until(lambda: state.device(WORKER) is not None and state.device(WORKER).polls)  # type: ignore[union-attr]
        idle = proc_peak_rss_mib(agent.pid)
        (run_id,) = queue_runs(state, WORKER, 1)
        wait_until(lambda: state.run(run_id).terminal, step=0.01)
        peak = proc_peak_rss_mib(agent.pid)
    return Figure(f"peak RSS, CLI printing {mib} MiB", "MiB", peak, idle, "≤ 70 MiB")


def bench_idle(seconds: float) -> list[Figure]:
    state = DevState(create_checkin_watcher=False, next_poll_seconds=10)
    token = state.add_token()
    with (
        DevServer(state).running_in_thread() as server,
        agent_home(["cat"]) as home,
        agent_process(home, server.url, token) as agent,
    ):
        wait_until(lambda: any(r.path == "/api/workers/poll" for r in state.requests))
        cpu0, t0 = proc_cpu_seconds(agent.pid), time.monotonic()
        time.sleep(seconds)  # a benchmark may sleep: this is the idle period measured
        cpu1, t1 = proc_cpu_seconds(agent.pid), time.monotonic()
        rss = proc_rss_mib(agent.pid)
    return [
        Figure("idle CPU", "% of a core", 100 * (cpu1 - cpu0) / (t1 - t0), None, "≤ 0.1 %"),
        Figure("idle RSS", "MiB", rss, None, "≤ 45 MiB"),
    ]


def bench_long_run(runs: int, output_kib: int) -> list[Figure]:
    figures = long_run(runs, output_kib)
    size = f"{runs} runs of {output_kib} KiB"
    return [
        Figure(f"journal after {size}", "MiB", figures.journal_mib, None, "≤ 50 MiB"),
        Figure(
            f"RSS after {size}", "MiB", figures.rss_after_mib, figures.rss_warm_mib, "≤ 1.1× (flat)"
        ),
        Figure(
            "peak RSS of a start on that journal",
            "MiB",
            figures.restart_peak_rss_mib,
            figures.fresh_peak_rss_mib,
            "≤ 1.1× an empty journal's",
        ),
    ]


def wall(argv: list[str], env: dict[str, str] | None = None, repeat: int = 5) -> float:
    spent = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        spent.append(time.perf_counter() - started)
    return p50(spent)


def bench_version(repeat: int) -> Figure:
    agent = wall([*AGENT, "--version"], env=checkout_env(), repeat=repeat)
    floor = wall([sys.executable, "-c", "pass"], repeat=repeat)
    return Figure("`device-agent --version`", "ms", 1000 * agent, 1000 * floor, "≤ 150 ms")


def bench_status(repeat: int) -> Figure:
    """`device-agent status` with no agent running: it reads the journal and says so."""
    with tempfile.TemporaryDirectory() as home:
        env = checkout_env() | {
            "DEVICE_AGENT_HOME": home,
            "DEVICE_AGENT_SERVER": "http://127.0.0.1:9",
        }
        agent = wall([*AGENT, "status"], env=env, repeat=repeat)
    floor = wall([sys.executable, "-c", "pass"], repeat=repeat)
    return Figure("`device-agent status`", "ms", 1000 * agent, 1000 * floor, "≤ 150 ms")


def bench_first_poll(repeat: int) -> Figure:
    """From `run` starting to the server seeing its first poll; baseline: the minimal loop."""
    state = DevState(create_checkin_watcher=False, next_poll_seconds=10)
    token = state.add_token()

    def first_poll(start: Callable[[], Any], worker: str) -> float:
        seen = state.device(worker).polls if state.device(worker) else 0  # type: ignore[union-attr]
        started = time.time()
        with start():
            device = wait_until(lambda: (d := state.device(worker)) and d.polls > seen and d)
            return device.last_seen_at - started  # type: ignore[no-any-return]

    ours, base = [], []
    with DevServer(state).running_in_thread() as server, agent_home(["cat"]) as home:
        for _ in range(repeat):
            ours.append(first_poll(lambda: agent_process(home, server.url, token), WORKER))
            base.append(first_poll(lambda: minimal_process(server.url, token, 1), BASELINE_WORKER))
    return Figure(
        "`run` start to first poll", "ms", 1000 * p50(ours), 1000 * p50(base), "(for reading)"
    )


def bench_trigger(repeat: int) -> Figure:
    """`device-agent trigger ID` start to the running agent's claim; baseline: a bare httpx post."""
    state = DevState(create_checkin_watcher=False, next_poll_seconds=30)
    token = state.add_token(bound_worker_id=WORKER)
    ours, base = [], []
    with (
        DevServer(state).running_in_thread() as server,
        agent_home(["cat"], wait_seconds=0) as home,
        agent_process(home, server.url, token),
    ):
        env = agent_env(home, server.url, token, WORKER)
        wait_until(lambda: (d := state.device(WORKER)) and d.polls)
        for _ in range(repeat):
            watcher = state.add_watcher(prompt=PROMPT, agent_kind=KIND, pinned_worker_id=WORKER)
            started = time.time()
            subprocess.run(
                [*AGENT, "trigger", watcher],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            run = wait_until(
                lambda w=watcher: next((r for r in state.runs() if r.watcher_id == int(w)), None)
            )
            claimed = wait_until(lambda r=run: state.run(r.id).claimed_at)
            ours.append(claimed - started)
            wait_until(lambda r=run: state.run(r.id).terminal)
        # The baseline triggers watchers of a device that never polls: the post alone is timed.
        other = state.add_token(bound_worker_id=BASELINE_WORKER)
        for _ in range(repeat):
            watcher = state.add_watcher(
                prompt=PROMPT, agent_kind=KIND, pinned_worker_id=BASELINE_WORKER
            )
            post = (
                "import httpx, sys; httpx.post(sys.argv[1], "
                "headers={'Authorization': 'Bearer ' + sys.argv[2]}).raise_for_status()"
            )
            url = f"{server.url}/api/workers/me/watchers/{watcher}/trigger"
            base.append(wall([sys.executable, "-c", post, url, other], repeat=1))
    return Figure("`trigger` start to claim", "ms", 1000 * p50(ours), 1000 * p50(base), "≤ 100 ms")


def bench_pickup(runs: int) -> Figure:
    state = DevState(create_checkin_watcher=False, lane="automation")
    token = state.add_token()
    with DevServer(state).running_in_thread() as server:
        base = baseline_pickups(state, server.url, token, runs)
        ours = agent_pickups(state, server.url, token, runs)
    return Figure(
        "pick-up of a run queued while idle, p50",
        "ms",
        1000 * p50(ours),
        1000 * p50(base),
        "≤ 50 ms",
    )


def render(figures: list[Figure]) -> str:
    rows = [f"{'figure':<52} {'device-agent':>14} {'baseline':>10} {'ratio':>7}  target"]
    for f in figures:
        base = "-" if f.baseline is None else f"{f.baseline:10.1f}"
        ratio = "-" if f.ratio is None else f"{f.ratio:6.2f}x"
        rows.append(f"{f.name:<52} {f.agent:9.1f} {f.unit:<4} {base:>10} {ratio:>7}  {f.target}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="runs per throughput figure")
    parser.add_argument("--idle-seconds", type=float, default=10)
    parser.add_argument("--repeat", type=int, default=5, help="samples per start-up figure")
    parser.add_argument("--output-mib", type=int, default=6)
    parser.add_argument("--long-runs", type=int, default=300, help="runs of the long-run figures")
    parser.add_argument("--long-output-kib", type=int, default=1024, help="output of each, KiB")
    parser.add_argument(
        "--long",
        action="store_true",
        help=f"long run by hand: {LONG_RUNS} runs of {LONG_OUTPUT_KIB} KiB",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.long:
        args.long_runs, args.long_output_kib = LONG_RUNS, LONG_OUTPUT_KIB

    # Start-up is measured as an installed package starts: with its bytecode compiled (pip
    # compiles it at install), not from source as in a checkout run with
    # PYTHONDONTWRITEBYTECODE=1, which would add ~30 ms of compiling to every start.
    compileall.compile_dir(Path(device_agent.__file__).parent, quiet=1)
    spawn = cat_spawn_seconds()
    figures = [
        *bench_runs(args.runs, 1, spawn),
        *bench_runs(args.runs, 4, spawn),
        bench_pickup(args.repeat),
        bench_trigger(args.repeat),
        bench_version(args.repeat),
        bench_status(args.repeat),
        bench_first_poll(args.repeat),
        bench_big_output(args.output_mib),
        *bench_idle(args.idle_seconds),
        *bench_long_run(args.long_runs, args.long_output_kib),
    ]
    machine = {
        "nproc": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "cat_spawn_ms": 1000 * spawn,
        "agent_command": " ".join(AGENT),
    }
    if args.json:
        print(
            json.dumps(
                {"machine": machine, "figures": [asdict(f) | {"ratio": f.ratio} for f in figures]}
            )
        )
    else:
        load = " ".join(f"{x:.2f}" for x in machine["loadavg"])  # type: ignore[attr-defined]
        print(f"nproc {machine['nproc']}, load average {load}, cat spawn p50 {1000 * spawn:.1f} ms")
        print(f"agent started as: {machine['agent_command']}")
        print(render(figures))


if __name__ == "__main__":
    main()
