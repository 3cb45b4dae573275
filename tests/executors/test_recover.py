"""What the next agent does about a killed agent's leftovers: orphaned CLIs and token files."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from structlog.testing import capture_logs

from device_agent.config import ExecutorSettings
from device_agent.executors import leftovers
from device_agent.executors.executor import Executor
from device_agent.executors.leftovers import OUTSIDE_NOTE, RUN_MARKER, groups_with_marker
from device_agent.executors.profiles import load_profiles
from device_agent.executors.request import ExecutionRequest
from tests.support.processes import alive
from tests.support.waiting import wait_for, wait_for_async


def test_recover_stops_orphans_and_deletes_token_files(tmp_path: Path) -> None:
    scratch = tmp_path / "runs"
    (scratch / "device-agent-7-abc").mkdir(parents=True)
    (scratch / "device-agent-7-abc" / "mcp.json").write_text('{"Authorization": "Bearer x"}')
    outside = tmp_path / "my-workdir" / ".gemini" / "settings.json"
    outside.parent.mkdir(parents=True)
    outside.write_text("token inside")
    (scratch / f"{OUTSIDE_NOTE}7-123").write_text(str(outside))
    env = {**os.environ, RUN_MARKER: f"{scratch}{os.sep}7"}
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], env=env, start_new_session=True
    )
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
    )
    try:
        executor = Executor(ExecutorSettings(kill_grace_seconds=0.5), {}, scratch_dir=scratch)
        assert asyncio.run(executor.recover()) == 1
        orphan.wait(timeout=10)
        assert not alive(orphan.pid)
        assert alive(bystander.pid)  # no marker, not ours: untouched
        assert not outside.exists()
        assert list(scratch.iterdir()) == []
    finally:
        for process in (orphan, bystander):
            process.kill()
            process.wait()


def test_recover_finds_an_orphan_when_the_state_dir_path_has_a_space(tmp_path: Path) -> None:
    """macOS keeps the state in `~/Library/Application Support/device-agent`: the marker's
    value holds a space, and the orphan must still be found by it."""
    scratch = tmp_path / "Library" / "Application Support" / "device-agent" / "runs"
    (scratch / "device-agent-7-abc").mkdir(parents=True)
    env = {**os.environ, RUN_MARKER: f"{scratch}{os.sep}7"}
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], env=env, start_new_session=True
    )
    # Same prefix up to the space: a match on the text before it would stop this one too.
    cut_short = {**os.environ, RUN_MARKER: f"{tmp_path / 'Library' / 'Application'}{os.sep}7"}
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        env=cut_short,
        start_new_session=True,
    )
    try:
        executor = Executor(ExecutorSettings(kill_grace_seconds=0.5), {}, scratch_dir=scratch)
        assert asyncio.run(executor.recover()) == 1
        orphan.wait(timeout=10)
        assert not alive(orphan.pid)
        assert alive(bystander.pid)
    finally:
        for process in (orphan, bystander):
            process.kill()
            process.wait()


class _Unreadable:
    """A process of ours whose environment the OS will not show, or one that became a zombie
    or exited between the listing and the question."""

    def __init__(self, pid: int, error: Exception) -> None:
        self.pid = pid
        self.error = error

    def uids(self) -> SimpleNamespace:
        return SimpleNamespace(real=os.getuid())

    def environ(self) -> dict[str, str]:
        raise self.error


def test_processes_whose_environment_cannot_be_read_are_skipped_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "runs"
    env = {**os.environ, RUN_MARKER: f"{scratch}{os.sep}7"}
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], env=env, start_new_session=True
    )
    # Until the child has exec'd, /proc still shows the environment it was forked with.
    wait_for(lambda: RUN_MARKER in psutil.Process(orphan.pid).environ(), what="the marker")
    odd = [
        _Unreadable(999_991, psutil.AccessDenied(999_991)),
        _Unreadable(999_992, psutil.ZombieProcess(999_992)),
        _Unreadable(999_993, psutil.NoSuchProcess(999_993)),
    ]
    listing = [*odd, psutil.Process(orphan.pid)]
    monkeypatch.setattr(leftovers.psutil, "process_iter", lambda: listing)
    try:
        with capture_logs() as lines:
            groups = groups_with_marker(f"{scratch}{os.sep}")
        assert groups == {orphan.pid}  # found despite the three it could not ask
        said = [line for line in lines if "could not read the environment" in line["event"]]
        assert [line["processes"] for line in said] == [1]  # only the AccessDenied one
    finally:
        orphan.kill()
        orphan.wait()


def test_recover_deletes_a_private_home_but_not_the_users_files_it_links(tmp_path: Path) -> None:
    """A Gemini run's stand-in home links the user's own ~/.gemini entries: removing a
    killed agent's leftover removes the links, never what they point at."""
    own = tmp_path / "home" / ".gemini"
    (own / "tmp").mkdir(parents=True)
    (own / "oauth_creds.json").write_text("their login")
    (own / "tmp" / "chat.json").write_text("their history")
    home = tmp_path / "runs" / "device-agent-7-abc" / "home" / ".gemini"
    home.mkdir(parents=True)
    (home / "settings.json").write_text('{"token": "x"}')
    (home / "oauth_creds.json").symlink_to(own / "oauth_creds.json")
    (home / "tmp").symlink_to(own / "tmp")
    executor = Executor(ExecutorSettings(), {}, scratch_dir=tmp_path / "runs")
    assert asyncio.run(executor.recover()) == 0
    assert list((tmp_path / "runs").iterdir()) == []
    assert (own / "oauth_creds.json").read_text() == "their login"
    assert (own / "tmp" / "chat.json").read_text() == "their history"


def test_a_run_waits_for_a_recovery_still_going_on_before_its_cli_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recovery runs alongside the first poll; a run claimed meanwhile never starts its CLI
    next to a killed agent's orphan."""
    marker = tmp_path / "cli-started"
    settings = ExecutorSettings(kill_grace_seconds=0.5)
    profile = Path(tmp_path / "executors")
    profile.mkdir()
    (profile / "touch.toml").write_text(f'argv = ["touch", "{marker}"]\n')
    executor = Executor(settings, load_profiles(user_dir=profile), scratch_dir=tmp_path / "runs")
    seen_during_recovery: list[bool] = []

    async def slow_recovery(scratch_dir: Path, *, grace: float) -> int:
        # An orphan that takes a while to stop: the CLI must not appear meanwhile, though
        # it would within a few ms if nothing held it back.
        try:
            await wait_for_async(marker.exists, timeout=1.0, what="the CLI to start")
        except AssertionError:
            seen_during_recovery.append(False)
        else:
            seen_during_recovery.append(True)
        return 1

    monkeypatch.setattr("device_agent.executors.executor.recover_leftovers", slow_recovery)

    async def go() -> None:
        recovery = executor.recover_in_background()
        request = ExecutionRequest(
            run_id=7, agent_kind="touch", prompt="hi", execution_config={}, mcp=None
        )
        report = await executor.execute(request, cancel=asyncio.Event())
        assert report.exit_code == 0, report.error
        assert marker.exists()  # started once the recovery was done
        assert recovery.result() == 1

    asyncio.run(go())
    assert seen_during_recovery == [False]


def test_closing_the_executor_waits_for_a_recovery_still_going_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    executor = Executor(ExecutorSettings(), {}, scratch_dir=tmp_path / "runs")
    orphan_stopped = asyncio.Event()

    async def slow_recovery(scratch_dir: Path, *, grace: float) -> int:
        await orphan_stopped.wait()
        return 1

    monkeypatch.setattr("device_agent.executors.executor.recover_leftovers", slow_recovery)

    async def go() -> None:
        recovery = executor.recover_in_background()
        orphan_stopped.set()  # the orphan goes; the agent, stopping, must see it gone
        await executor.aclose()
        assert recovery.done()
        assert recovery.result() == 1

    asyncio.run(go())
