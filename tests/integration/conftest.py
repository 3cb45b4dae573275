"""Integration fixtures: the dev server on loopback, fake CLIs on PATH, the agent as a process."""

from __future__ import annotations

import concurrent.futures
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from device_agent.devserver import DevServer, DevState
from tests.helpers import install_fake

HERE = Path(__file__).parent
WORKER_ID = "linux:test-device"


def journal_rows(home: Path) -> dict[int, dict[str, Any]]:
    """The agent's journal, read straight from its SQLite file."""
    path = home / "state" / "journal.sqlite3"
    if not path.exists():
        return {}
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        rows = {row["run_id"]: dict(row) for row in db.execute("SELECT * FROM runs")}
        for run_id, output in db.execute("SELECT run_id, output FROM outputs"):
            rows[run_id]["output"] = output  # outputs are kept apart from their runs
        return rows
    finally:
        db.close()


def daemon_status(home: Path) -> dict[str, Any]:
    """What the running agent of `home` says over its control socket; {} when none answers."""
    from device_agent.desktop.control_client import ControlError, request, socket_path

    try:
        return request(socket_path(home / "state"), "status", timeout=5.0)
    except ControlError:  # DaemonNotRunning included: not up yet, or already gone
        return {}


def drain(process: subprocess.Popen[str]) -> concurrent.futures.Future[str]:
    """Read a long-running agent's stderr as it comes, so that a full pipe never blocks it;
    the future holds all of it once the process has exited."""
    assert process.stderr is not None
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(process.stderr.read)
    pool.shutdown(wait=False)
    return future


def stop(process: subprocess.Popen[str], stderr: concurrent.futures.Future[str]) -> tuple[int, str]:
    """SIGTERM an agent started with `Lab.start_agent_under_file_limit`; its code and stderr."""
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=60)
    return code, stderr.result(timeout=60)


@dataclass
class Lab:
    """One dev server, one agent home, fake CLIs: what every integration test needs."""

    state: DevState
    url: str
    token: str
    home: Path
    bin_dir: Path
    cli_log: Path
    config: dict[str, Any] = field(default_factory=dict)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICE_AGENT_")}
        env.update(
            DEVICE_AGENT_HOME=str(self.home),
            DEVICE_AGENT_SERVER=self.url,
            DEVICE_AGENT_TOKEN=self.token,
            DEVICE_AGENT_WORKER_ID=WORKER_ID,
            PATH=f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}",
            FAKE_CLI_LOG=str(self.cli_log),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def write_config(self) -> None:
        lines = []
        sections: dict[str, dict[str, Any]] = {}
        for key, value in self.config.items():
            if isinstance(value, dict):
                sections[key] = value
            else:
                lines.append(f"{key} = {json.dumps(value)}")
        for name, values in sections.items():
            lines.append(f"[{name}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        path = self.home / "config" / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")

    def run_agent(
        self, *args: str, timeout: float = 60.0, **env: str
    ) -> subprocess.CompletedProcess[str]:
        self.write_config()
        return subprocess.run(
            [sys.executable, "-m", "device_agent", *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start_agent(self, *args: str, **env: str) -> subprocess.Popen[str]:
        self.write_config()
        process = subprocess.Popen(
            [sys.executable, "-m", "device_agent", "run", *args],
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        return process

    def start_agent_under_file_limit(
        self, limit: int
    ) -> tuple[subprocess.Popen[str], concurrent.futures.Future[str]]:
        """`run` as if the disk filled up after `limit` bytes per file (RLIMIT_FSIZE: a real
        EFBIG); `resource.prlimit` on its pid lifts it later. Its stderr is drained."""
        self.write_config()
        process = subprocess.Popen(
            [sys.executable, "-m", "device_agent", "run"],
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: resource.setrlimit(
                resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY)
            ),
        )
        self.processes.append(process)
        return process, drain(process)

    def stop_agent(self, process: subprocess.Popen[str], timeout: float = 30.0) -> tuple[int, str]:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=timeout)
        return process.returncode, err

    def executions(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.cli_log.glob("*.json"))]

    def add_watcher(self, prompt: str, name: str = "Inbox digest", **kw: Any) -> str:
        kw.setdefault("agent_kind", "claude-code")
        return self.state.add_watcher(prompt=prompt, name=name, pinned_worker_id=WORKER_ID, **kw)


@pytest.fixture
def lab(tmp_path: Path, isolated_home: Path) -> Iterator[Lab]:
    state = DevState(create_checkin_watcher=False)
    token = state.add_token()
    bin_dir = tmp_path / "bin"
    install_fake(bin_dir, "claude")
    cli_log = tmp_path / "cli-log"
    cli_log.mkdir()
    with DevServer(state).running_in_thread() as server:
        lab = Lab(
            state=state,
            url=server.url,
            token=token,
            home=isolated_home,
            bin_dir=bin_dir,
            cli_log=cli_log,
            config={"heartbeat_seconds": 0.5, "max_backoff_seconds": 0.5},
        )
        try:
            yield lab
        finally:
            for process in lab.processes:
                if process.poll() is None:
                    process.kill()
                    process.communicate()
