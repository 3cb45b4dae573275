"""The first ten minutes of a new user, scripted: a fresh home, `device-agent dev-server`, the
`run` line it prints pasted as printed, a run completes, then `status`, `history`, `trigger`."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.waiting import wait_for

AGENT = [sys.executable, "-m", "device_agent"]


def _fresh_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICE_AGENT_")}
    env.update(DEVICE_AGENT_HOME=str(home), PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def dev_server(tmp_path: Path, isolated_home: Path) -> Iterator[str]:
    """`device-agent dev-server --port 0` as a user starts it; yields what it printed."""
    printed = tmp_path / "dev-server.out"
    with printed.open("w") as out:
        server = subprocess.Popen(
            [*AGENT, "dev-server", "--port", "0"],
            env=_fresh_env(isolated_home),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield wait_for(
            lambda: _run_line(printed.read_text()), what="the dev server to print its run line"
        )
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)


def _run_line(printed: str) -> str | None:
    lines = printed.splitlines()
    if not any(line.startswith("export ") for line in lines):
        return None  # not all printed yet
    return "\n".join(
        line for line in lines if "device-agent run" in line or line.startswith("export ")
    )


def _pasted(printed: str, home: Path) -> tuple[list[str], dict[str, str]]:
    """The printed `VAR=value … device-agent run …` line, as a shell would run it."""
    words = shlex.split(printed.splitlines()[0])
    env = _fresh_env(home)
    while "=" in words[0]:
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    assert words[0] == "device-agent"
    return [*AGENT, *words[1:]], env


def _other_shell(printed: str, home: Path) -> dict[str, str]:
    """Another shell, after the printed `export …` line: what status, history, trigger see."""
    words = shlex.split(printed.splitlines()[1])
    assert words.pop(0) == "export"
    return _fresh_env(home) | dict(word.split("=", 1) for word in words)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENT, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _succeeded(env: dict[str, str]) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = json.loads(_cli(env, "history", "--json").stdout)
    return [r for r in runs if r["state"] == "acknowledged" and not r["error"]]


def test_a_new_user_gets_a_run_done_with_the_printed_line(
    dev_server: str, isolated_home: Path
) -> None:
    argv, agent_env = _pasted(dev_server, isolated_home)
    env = _other_shell(dev_server, isolated_home)
    agent = subprocess.Popen(argv, env=agent_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        done = wait_for(lambda: _succeeded(env), timeout=60, what="the sample run to succeed")

        status = _cli(env, "status")
        assert status.returncode == 0, status.stderr
        assert "agent: running" in status.stdout
        assert "last poll:" in status.stdout
        assert "never" not in status.stdout
        report = json.loads(_cli(env, "status", "--json").stdout)
        assert report["schema_version"] == 1
        assert report["daemon_running"]
        assert report["last_poll_at"]

        history = _cli(env, "history")
        assert "succeeded" in history.stdout, history.stdout

        triggered = _cli(env, "trigger", str(done[0]["watcher_id"]))
        assert triggered.returncode == 0, triggered.stderr
        wait_for(
            lambda: len(_succeeded(env)) > len(done),
            timeout=60,
            what="the triggered run to succeed",
        )
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=60)
    assert agent.returncode == 0, err
    stopped = _cli(env, "status")
    assert "agent: not running" in stopped.stdout
