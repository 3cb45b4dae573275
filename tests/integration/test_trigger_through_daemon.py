"""`device-agent trigger` with an agent running: the request goes over the control socket, the
daemon asks the server and polls at once, and the command never loads the HTTP stack. Its
messages and exit codes are the ones it gives when it asks the server itself."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.agent import daemon_status
from tests.support.lab import Lab, drain
from tests.support.waiting import wait_for

# What the command would load to ask the server itself.
HTTP_STACK = ("httpx", "httpcore", "device_agent.identity.http")


@pytest.fixture
def running(lab: Lab) -> Iterator[Lab]:
    """`run` in the background; the test starts once its control socket answers."""
    process = lab.start_agent()
    stderr = drain(process)
    try:
        wait_for(lambda: daemon_status(lab.home), timeout=60, what="the agent's control socket")
        yield lab
    finally:
        lab.stop_agent(process)
        stderr.result(timeout=60)


def trigger(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    """`device-agent trigger …` with Python's import trace on stderr."""
    lab.write_config()
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "device_agent", "trigger", *args],
        env=lab.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def imported(result: subprocess.CompletedProcess[str]) -> set[str]:
    return {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def said(result: subprocess.CompletedProcess[str]) -> str:
    return "\n".join(
        line for line in result.stderr.splitlines() if not line.startswith("import time:")
    )


def test_trigger_goes_through_the_running_agent_which_claims_the_run(running: Lab) -> None:
    lab = running
    watcher = lab.add_watcher("Run me now")
    result = trigger(lab, watcher)

    assert result.returncode == 0, said(result)
    lines = result.stdout.splitlines()
    assert re.fullmatch(rf"watcher {watcher}: run \d+ queued, server status 'pending'", lines[0])
    assert lines[1:] == ["asked the running agent to poll now"]
    assert not imported(result) & set(HTTP_STACK), "trigger loaded the HTTP stack itself"
    assert any(r.path.endswith(f"/watchers/{watcher}/trigger") for r in lab.state.requests)
    wait_for(lambda: lab.executions(), timeout=60, what="the triggered run to execute")
    assert lab.token not in result.stdout + result.stderr


def test_a_refusal_through_the_agent_keeps_the_direct_message_and_exit_code(
    running: Lab,
) -> None:
    result = trigger(running, "inbox-digest")
    assert result.returncode == 2
    assert said(result).startswith("device-agent: 'inbox-digest' is not a watcher id")
    assert "takes the number the web app shows" in said(result)
    assert "refused" not in said(result)  # the server's verdict, not the socket's wording


def test_a_daemon_without_a_lane_or_a_claimed_run_uses_the_watcher_lane(running: Lab) -> None:
    watcher = running.add_watcher("First")
    result = trigger(running, watcher)
    assert result.returncode == 0, said(result)
    assert result.stdout.startswith(f"watcher {watcher}: run ")
    assert any(r.path.endswith(f"/watchers/{watcher}/trigger") for r in running.state.requests)
