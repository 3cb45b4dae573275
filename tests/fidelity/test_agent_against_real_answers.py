"""The agent against the dev server's faithful answers: what a real server does to it.

Each test runs `device-agent run --once` as a user would (the fixed command,
environment and config file) against a dev server that answers like Lobu
1.6.0, and asserts what reaches the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from device_agent.config import Settings
from device_agent.devserver import DevState
from tests.support.lab import Lab, open_lab
from tests.support.waiting import wait_for

# A booting Lobu held first polls 20-42 s, and more under load; it claims a run for a held
# poll even when the client has given up on it (docs/protocol.md, "What a real server does").
LONGEST_WARM_UP_SEEN = 50.0


@pytest.fixture
def lab(isolated_home: Path, tmp_path: Path) -> Iterator[Lab]:
    with open_lab(DevState(create_checkin_watcher=False), isolated_home, tmp_path) as running:
        # A small error budget: a result the server keeps refusing is settled quickly.
        running.config["server_error_budget"] = 2
        yield running


def test_a_nul_printed_by_the_cli_is_delivered_as_a_success(lab: Lab) -> None:
    # The offline demo agent quotes the prompt's first line, NUL included.
    run_id = lab.state.queue_run(lab.add_watcher("Report\x00this", agent_kind=None))

    lab.run_agent("run", "--once", "--agent", "demo")

    run = lab.state.run(run_id)
    assert run.status == "completed", run.error
    output = run.output or ""
    assert "Report" in output
    assert "this" in output


def test_a_nul_in_the_error_is_delivered_with_the_failure(lab: Lab) -> None:
    # No executor for this kind: the agent's own error quotes it, NUL included.
    run_id = lab.state.queue_run(lab.add_watcher("Hi", agent_kind="odd\x00kind"))

    lab.run_agent("run", "--once", "--agent", "demo")

    run = lab.state.run(run_id)
    assert run.status == "failed"
    assert "no local agent executor configured for agent_kind='odd" in (run.error or "")


def test_the_default_poll_timeout_outlasts_a_booting_servers_warm_up() -> None:
    assert Settings().poll_timeout_seconds > LONGEST_WARM_UP_SEEN


def test_a_poll_held_through_a_warm_up_still_receives_its_run(lab: Lab) -> None:
    # The shortest poll timeout the config accepts (for a poll not held for a run,
    # wait_seconds = 0) against a warm-up that holds the agent's poll for 2 s once it arrived.
    lab.config.update(wait_seconds=0, poll_timeout_seconds=60)
    run_id = lab.state.queue_run(lab.add_watcher("Hello", agent_kind=None))
    lab.state.start_warmup(60)
    agent = lab.start_agent("--once", "--agent", "demo")
    wait_for(lambda: lab.state.warming_polls == 1, timeout=30, what="the poll to be held")
    lab.state.start_warmup(2)  # the server is warm 2 s from now

    _, err = agent.communicate(timeout=60)

    assert agent.returncode == 0, err
    run = lab.state.run(run_id)
    assert run.status == "completed", run.error
    assert run.claims == 1
