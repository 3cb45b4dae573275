"""An in-process lab for the lanes of current Lobu servers: the dev server in automation
mode, an agent home, a fake CLI on PATH that logs each run, and the agent run with
`run_agent` in the test's own event loop (the automation and chat lane integration tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import pytest

from device_agent.agent.poll_loop import PollLoop
from device_agent.config import Paths, Settings, validate
from device_agent.devserver import DevServer, DevState
from device_agent.errors import ExitCode
from tests.support.agent import install_fake
from tests.support.inprocess import started_agent

AGENT_RUN: Final = [sys.executable, "-m", "device_agent", "run"]


@dataclass
class LaneLab:
    state: DevState
    token: str
    home: Path
    reports: Path  # $FAKE_REPORT: what the fake saw of its runs
    cli_log: Path  # $FAKE_CLI_LOG: one JSON file per run the fake was started for
    worker: str

    def settings(self, url: str, **overrides: Any) -> Settings:
        """Quick beats, backoff and stop, so that no test waits for real-world periods."""
        values: dict[str, Any] = {
            "server": url,
            "token": self.token,
            "worker_id": self.worker,
            "heartbeat_seconds": 0.2,
            "max_backoff_seconds": 0.5,
            "shutdown_grace_seconds": 0.2,
            "paths": Paths.resolve({"DEVICE_AGENT_HOME": str(self.home)}),
        } | overrides
        return validate(Settings(**values))

    def agent_env(self, url: str) -> dict[str, str]:
        """The environment of `device-agent` run as a process of its own polling `url`
        (its home is the lab's: DEVICE_AGENT_HOME is set already)."""
        return {
            **os.environ,
            "DEVICE_AGENT_SERVER": url,
            "DEVICE_AGENT_TOKEN": self.token,
            "DEVICE_AGENT_WORKER_ID": self.worker,
        }

    def agent_process(self, url: str) -> subprocess.Popen[bytes]:
        """`device-agent run` as a process (for a test that kills it); stderr is a pipe."""
        return subprocess.Popen(
            AGENT_RUN, env=self.agent_env(url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def run_once(self, url: str) -> subprocess.CompletedProcess[str]:
        """`device-agent run --once` as a process, to its end."""
        return subprocess.run(
            [*AGENT_RUN, "--once"],
            env=self.agent_env(url),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    @asynccontextmanager
    async def running(self, **overrides: Any) -> AsyncIterator[tuple[DevServer, PollLoop]]:
        """The dev server and the agent polling it, stopped (and its exit checked) after."""
        async with DevServer(self.state) as server:
            task, agent = await started_agent(
                self.settings(server.url, **overrides), self.token, worker_id=self.worker
            )
            try:
                yield server, agent
            finally:
                agent.request_stop()
                agent.request_stop()  # a second stop hurries the drain
                assert await task == ExitCode.OK


LabT = TypeVar("LabT", bound=LaneLab)


def open_lane_lab(
    kind: type[LabT],
    *,
    fake: str,
    worker: str,
    reports: str,
    tmp_path: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> LabT:
    """A lab of `kind` whose fake CLI `fake` answers as `claude` on PATH."""
    bin_dir = tmp_path / "bin"
    install_fake(bin_dir, fake, "claude")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.local/bin with a real CLI in it
    cli_log = tmp_path / "cli-log"
    cli_log.mkdir()
    monkeypatch.setenv("FAKE_CLI_LOG", str(cli_log))
    monkeypatch.setenv("FAKE_REPORT", str(tmp_path / reports))
    state = DevState(create_checkin_watcher=False, lane="automation", next_poll_seconds=0.2)
    return kind(state, state.add_token(), home, tmp_path / reports, cli_log, worker)


AUTOMATION_WORKER: Final = "headless:autolane"


class AutoLab(LaneLab):
    """The automation lane's lab: automations pinned to this device, a fake Claude Code that
    finalizes through the run's MCP session (tests/fakes/claude_automation.py)."""

    def automation(self, prompt: str, **kw: Any) -> str:
        return self.state.add_automation(prompt, name="Digest", pinned_worker_id=self.worker, **kw)

    def executions(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.cli_log.glob("*.json"))]

    def seen(self, round_: int = 1) -> dict[str, Any]:
        """What the fake saw in round `round_` (it writes <reports>.1, .2, … per round)."""
        data: dict[str, Any] = json.loads(Path(f"{self.reports}.{round_}").read_text())
        return data

    def agent(self, **overrides: Any) -> AbstractAsyncContextManager[tuple[DevServer, PollLoop]]:
        return self.running(**overrides)


def settled(state: DevState, run_id: int) -> Callable[[], bool]:
    """The automation run is over on the server, its exit report received."""
    return lambda: state.run(run_id).terminal and state.run(run_id).exit_reports > 0
