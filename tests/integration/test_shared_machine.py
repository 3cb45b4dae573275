"""Issue 8, points 11-14: a shared machine, a terminal, and configuration mistakes.

Each test runs `device-agent` as a user would and checks what the user sees
and what is left on disk.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_agent.agent.journal import Journal
from device_agent.agent.result import ExitReason, Report
from device_agent.devserver import DevServer, DevState
from tests.support.agent import agent_env
from tests.support.waiting import wait_for

WORKER = "linux:shared"
SERVER = "http://127.0.0.1:9"
ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07"


def env_for(home: Path, server: str = SERVER, token: str = "owl_pat_" + "s" * 32) -> dict[str, str]:
    return agent_env(home, server=server, token=token, worker_id=WORKER)


def agent(home: Path, *args: str, server: str = SERVER) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device_agent", *args],
        env=env_for(home, server),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_config_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one line, never a traceback
    for word in words:
        assert word in lines[0]


# ------------------------------------------------------------------ point 14


@pytest.mark.parametrize("server", ["http://localhost:99999", "http://localhost:x"])
def test_a_server_url_with_a_bad_port_is_a_configuration_error(
    isolated_home: Path, server: str
) -> None:
    done = agent(isolated_home, "run", "--once", "--server", server)
    assert_config_error(done, "no valid port", "65535")


def test_a_file_where_the_state_dir_should_be_is_a_configuration_error(
    isolated_home: Path,
) -> None:
    isolated_home.mkdir(parents=True)
    (isolated_home / "state").write_text("not a directory")
    done = agent(isolated_home, "run", "--once")
    assert_config_error(done, str(isolated_home / "state"), "DEVICE_AGENT_HOME")


# ------------------------------------------------------------------ point 11


def test_a_state_dir_others_can_write_is_refused(isolated_home: Path) -> None:
    state = isolated_home / "state"
    state.mkdir(parents=True)
    state.chmod(0o777)
    done = agent(isolated_home, "run", "--once")
    assert_config_error(done, "group or others", "chmod go-w")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a dir to another user")
def test_a_state_dir_of_another_user_is_refused(isolated_home: Path) -> None:
    state = isolated_home / "state"
    state.mkdir(parents=True, mode=0o700)
    os.chown(state, 65534, 65534)
    done = agent(isolated_home, "run", "--once")
    assert_config_error(done, "belongs to another user")


def test_a_symlink_planted_at_the_lock_is_not_followed(isolated_home: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    state = isolated_home / "state"
    state.mkdir(parents=True, mode=0o700)
    (state / "agent.lock").symlink_to(victim)
    done = agent(isolated_home, "run", "--once", "--agent", "demo")
    assert_config_error(done, "agent.lock", "remove it")
    assert victim.read_text() == "precious"


# ------------------------------------------------------------- points 11, 12


@pytest.fixture
def running_agent(isolated_home: Path, tmp_path: Path) -> Iterator[tuple[DevState, Path]]:
    """`device-agent run` under a permissive umask, after one run it finished; a symlink
    planted where its control socket goes."""
    state = DevState(create_checkin_watcher=False)
    token = state.add_token()
    with DevServer(state).running_in_thread() as server:
        victim = tmp_path / "victim.txt"
        victim.write_text("precious")
        (isolated_home / "state").mkdir(parents=True, mode=0o700)
        (isolated_home / "state" / "control.sock").symlink_to(victim)
        watcher = state.add_watcher("Hello", agent_kind=None, pinned_worker_id=WORKER)
        run_id = state.queue_run(watcher)
        process = subprocess.Popen(
            [sys.executable, "-m", "device_agent", "run", "--agent", "demo"],
            env=env_for(isolated_home, server.url, token),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            umask=0o022,  # a usual user umask: the agent must not rely on it
        )
        try:
            wait_for(lambda: state.run(run_id).status == "completed", timeout=90, what="the run")
            yield state, victim
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def test_everything_the_agent_creates_is_owner_only(
    running_agent: tuple[DevState, Path], isolated_home: Path
) -> None:
    created = [path for path in isolated_home.rglob("*") if not path.is_symlink()]
    names = {path.name for path in created}
    assert {"journal.sqlite3", "journal.sqlite3-wal", "device-agent.log"} <= names
    for path in [isolated_home / "state", *created]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


def test_a_symlink_planted_at_the_control_socket_is_not_followed(
    running_agent: tuple[DevState, Path],
) -> None:
    _, victim = running_agent
    assert victim.read_text() == "precious"


# ------------------------------------------------------------------ point 13


def seed_journal(home: Path) -> None:
    (home / "state").mkdir(parents=True, mode=0o700)
    journal = Journal(home / "state" / "journal.sqlite3")
    journal.record_claim(
        SERVER,
        7,
        run_type="watcher",
        watcher_id="w",
        watcher_name=f"digest{ESCAPES}",
        agent_kind="claude-code",
        payload_digest="d",
    )
    report = Report(
        output=f"line one\n\tline two{ESCAPES}",
        error=f"oops{ESCAPES}",
        duration_ms=5,
        exit_code=0,
        exit_signal=None,
        exit_reason=ExitReason.OK,
    )
    journal.record_result(SERVER, 7, report)
    journal.close()


@pytest.mark.parametrize("args", [("history",), ("history", "--run", "7")])
def test_history_never_prints_terminal_control_characters(
    isolated_home: Path, args: tuple[str, ...]
) -> None:
    seed_journal(isolated_home)
    done = agent(isolated_home, *args)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout
    assert "\x07" not in done.stdout
    assert "digest\\x1b]0;owned\\x07" in done.stdout
    if "--run" in args:
        assert "line one\n\tline two\\x1b" in done.stdout  # a run's lines stay lines


def test_history_json_keeps_the_text_as_it_was(isolated_home: Path) -> None:
    seed_journal(isolated_home)
    done = agent(isolated_home, "history", "--json")
    assert json.loads(done.stdout)[0]["watcher_name"] == f"digest{ESCAPES}"
