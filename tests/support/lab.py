"""A lab for tests of the agent as a process: the dev server on loopback, an agent home,
fake CLIs on its PATH, and the agent started (and stopped) as a user or a service would."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device_agent.devserver import DevServer, DevState
from tests.support.agent import agent_env, install_fake, write_config

WORKER_ID = "linux:test-device"


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
        env = agent_env(self.home, server=self.url, token=self.token, worker_id=WORKER_ID)
        env.update(
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
        write_config(self.home, "\n".join(lines) + "\n")

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


@contextlib.contextmanager
def open_lab(state: DevState, home: Path, scratch: Path) -> Iterator[Lab]:
    """`state` served on loopback for an agent of `home`, with the fake `claude` in
    `scratch`/bin; every agent the lab started is killed on the way out."""
    token = state.add_token()
    bin_dir = scratch / "bin"
    install_fake(bin_dir, "claude")
    cli_log = scratch / "cli-log"
    cli_log.mkdir()
    with DevServer(state).running_in_thread() as server:
        lab = Lab(
            state=state,
            url=server.url,
            token=token,
            home=home,
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
