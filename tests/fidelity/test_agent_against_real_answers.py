"""The agent against the dev server's faithful answers: what a real server does to it.

Each test runs `device-agent run --once` as a user would (the fixed command,
environment and config file) against a dev server that answers like Lobu
1.6.0, and asserts what reaches the server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from device_agent.devserver import DevServer, DevState

WORKER = "linux:fidelity"


@dataclass
class Setup:
    state: DevState
    url: str
    token: str
    home: Path

    def run_once(self, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        config = self.home / "config" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        # A small error budget: a result the server keeps refusing is settled quickly.
        config.write_text("server_error_budget = 2\nmax_backoff_seconds = 0.5\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICE_AGENT_")}
        env.update(
            DEVICE_AGENT_HOME=str(self.home),
            DEVICE_AGENT_SERVER=self.url,
            DEVICE_AGENT_TOKEN=self.token,
            DEVICE_AGENT_WORKER_ID=WORKER,
        )
        return subprocess.run(
            [sys.executable, "-m", "device_agent", "run", "--once", "--agent", "demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def serve(state: DevState, isolated_home: Path) -> Iterator[Setup]:
    token = state.add_token()
    with DevServer(state).running_in_thread() as server:
        yield Setup(state=state, url=server.url, token=token, home=isolated_home)


@pytest.fixture
def setup(isolated_home: Path) -> Iterator[Setup]:
    yield from serve(DevState(create_checkin_watcher=False), isolated_home)


def test_a_nul_printed_by_the_cli_is_delivered_as_a_success(setup: Setup) -> None:
    # The offline demo agent quotes the prompt's first line, NUL included.
    watcher = setup.state.add_watcher("Report\x00this", agent_kind=None, pinned_worker_id=WORKER)
    run_id = setup.state.queue_run(watcher)

    setup.run_once()

    run = setup.state.run(run_id)
    assert run.status == "completed", run.error
    output = run.output or ""
    assert "Report" in output
    assert "this" in output


def test_a_nul_in_the_error_is_delivered_with_the_failure(setup: Setup) -> None:
    # No executor for this kind: the agent's own error quotes it, NUL included.
    watcher = setup.state.add_watcher("Hi", agent_kind="odd\x00kind", pinned_worker_id=WORKER)
    run_id = setup.state.queue_run(watcher)

    setup.run_once()

    run = setup.state.run(run_id)
    assert run.status == "failed"
    assert "no local agent executor configured for agent_kind='odd" in (run.error or "")


@pytest.mark.slow
def test_a_poll_held_through_a_long_warm_up_still_receives_its_run(isolated_home: Path) -> None:
    # A booting Lobu held first polls 20-42 s and more under load; 50 s is past
    # the agent's old 40 s poll timeout, and the server claims the run anyway.
    state = DevState(create_checkin_watcher=False, warmup_seconds=50)
    for running in serve(state, isolated_home):
        watcher = state.add_watcher("Hello", agent_kind=None, pinned_worker_id=WORKER)
        run_id = state.queue_run(watcher)

        running.run_once(timeout=180)

        assert state.run(run_id).status == "completed"
