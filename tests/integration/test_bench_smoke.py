"""A smoke run of the benchmark (bench/run.py): it runs end to end and reports every figure.

Tiny sizes; the figures are measurements, never assertions (see the README's "Benchmarks").
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench" / "run.py"
FIGURES = {
    "throughput, concurrency 1",
    "throughput, concurrency 4",
    "throughput, concurrency 1, vs a loop that journals",
    "throughput, concurrency 4, vs a loop that journals",
    "agent time per run beyond the CLI, p50",
    "CPU per run, CLI excluded",
    "pick-up of a run queued while idle, p50",
    "`trigger` start to claim",
    "`device-agent --version`",
    "`device-agent status`",
    "`run` start to first poll",
    "peak RSS, CLI printing 1 MiB",
    "idle CPU",
    "idle RSS",
    "journal after 3 runs of 64 KiB",
    "RSS after 3 runs of 64 KiB",
    "peak RSS of a start on that journal",
}


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the benchmark reads /proc")
def test_the_benchmark_reports_every_figure_with_its_baseline() -> None:
    argv = [sys.executable, str(BENCH), "--json", "--runs", "3", "--repeat", "1"]
    argv += ["--idle-seconds", "0.2", "--output-mib", "1", "--long-runs", "3"]
    argv += ["--long-output-kib", "64"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    figures = {figure["name"]: figure for figure in report["figures"]}
    assert set(figures) == FIGURES
    assert all(math.isfinite(figure["agent"]) for figure in figures.values())
    targets = {"idle CPU", "idle RSS", "journal after 3 runs of 64 KiB"}
    for name in FIGURES - targets:  # the rest are compared with a baseline
        assert figures[name]["baseline"] > 0, name
    assert report["machine"]["nproc"] >= 1
