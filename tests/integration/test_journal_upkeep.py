"""The journal while the agent runs (issue 27): retention as runs settle, a start that
reads no run's output, and the held-poll mark that lets a start after a crash say that a run
may have been claimed and lost."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from device_agent.agent import app
from device_agent.agent.journal import ACKNOWLEDGED, Journal, Retention
from device_agent.agent.result import ExitReason, Report
from device_agent.agent.status import PossiblyLostClaim
from device_agent.cli.status import gather
from device_agent.config import JournalSettings, Paths, Settings, validate
from device_agent.desktop.control_handler import AgentControl
from device_agent.devserver import DevServer, DevState
from device_agent.errors import ExitCode
from tests.support.agent import daemon_status, journal_rows
from tests.support.inprocess import started_agent
from tests.support.lab import Lab
from tests.support.waiting import wait_for, wait_for_async

WORKER = "linux:journal"
LOST = "may have handed that poll a run"  # words of PossiblyLostClaim.note()


def settings_for(url: str, token: str, home: Path, **changes: Any) -> Settings:
    settings = Settings(
        server=url,
        token=token,
        worker_id=WORKER,
        default_agent="demo",
        paths=Paths.resolve({"DEVICE_AGENT_HOME": str(home)}),
    )
    return validate(replace(settings, **changes))


def journal_file(home: Path) -> Path:
    return home / "state" / "journal.sqlite3"


def held_poll(home: Path) -> dict[str, Any] | None:
    db = sqlite3.connect(journal_file(home))
    db.row_factory = sqlite3.Row
    try:
        row = db.execute("SELECT server, since, ended FROM held_poll").fetchone()
        return dict(row) if row else None
    finally:
        db.close()


def test_the_journal_keeps_keep_rows_settled_runs_while_the_agent_runs(
    isolated_home: Path,
) -> None:
    kept: list[int] = []

    async def go() -> None:
        state = DevState(create_checkin_watcher=False, next_poll_seconds=0.2)
        token = state.add_token()
        async with DevServer(state) as server:
            settings = settings_for(
                server.url, token, isolated_home, journal=JournalSettings(keep_rows=2)
            )
            task, agent = await started_agent(settings, token, worker_id=WORKER)
            for n in range(5):
                watcher = state.add_watcher(
                    prompt=f"run {n}", name=f"w{n}", agent_kind="demo", pinned_worker_id=WORKER
                )
                run_id = state.queue_run(watcher)
                await wait_for_async(
                    lambda r=run_id: (
                        journal_rows(isolated_home).get(r, {}).get("state") == ACKNOWLEDGED
                    ),
                    what=f"run {run_id} settled in the journal",
                )
                kept.append(len(journal_rows(isolated_home)))
            agent.request_stop()
            assert await task == ExitCode.OK

    asyncio.run(go())
    assert kept == [1, 2, 2, 2, 2]  # pruned as runs settle, not at the next start


def test_a_start_reads_no_runs_output_with_12_outputs_of_3_mib_in_the_journal(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []

    class WatchedJournal(Journal):
        """The agent's journal, recording every statement that reads a run's output."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)

            def authorize(action: int, table: str | None, column: str | None, *_: object) -> int:
                if action == sqlite3.SQLITE_READ and column == "output":
                    reads.append(f"{table}.{column}")
                return sqlite3.SQLITE_OK

            self._db.set_authorizer(authorize)

    monkeypatch.setattr(app, "Journal", WatchedJournal)
    keep_all = JournalSettings(keep_output_bytes=4 << 20)  # the 3 MiB outputs stay whole

    async def go() -> None:
        state = DevState(create_checkin_watcher=False, next_poll_seconds=3600)
        token = state.add_token()
        async with DevServer(state) as server:
            seed = Journal(
                journal_file(isolated_home), retention=Retention(keep_output_bytes=4 << 20)
            )
            for run_id in range(1, 13):
                seed.record_claim(
                    server.url,
                    run_id,
                    run_type="watcher",
                    watcher_id=str(run_id),
                    watcher_name=f"digest {run_id}",
                    agent_kind="demo",
                    payload_digest="d",
                )
                output = chr(ord("a") + run_id) * (3 << 20)
                seed.record_result(
                    server.url, run_id, Report(output, None, 1, 0, None, ExitReason.OK)
                )
                seed.settle(server.url, run_id, state=ACKNOWLEDGED, answer="ok", message=None)
            seed.close()
            settings = settings_for(server.url, token, isolated_home, journal=keep_all)
            task, agent = await started_agent(settings, token, worker_id=WORKER)
            await wait_for_async(lambda: agent.status.state == "idle", what="the first poll")
            targets = agent.pipeline.board.targets()
            agent.request_stop()
            assert await task == ExitCode.OK
        assert len(targets) == 12  # the recent-runs query ran: "Run now" knows them all

    asyncio.run(go())
    assert reads == []
    assert journal_rows(isolated_home)[12]["output_bytes"] == 3 << 20  # and they are there


def test_a_held_poll_is_in_the_journal_until_it_ends(isolated_home: Path) -> None:
    async def go() -> None:
        state = DevState(create_checkin_watcher=False, lane="automation")
        token = state.add_token()
        async with DevServer(state) as server:
            task, agent = await started_agent(
                # The stop waits for the poll in flight no longer than the grace.
                replace(settings_for(server.url, token, isolated_home), shutdown_grace_seconds=0.5),
                token,
                worker_id=WORKER,
            )
            await wait_for_async(lambda: state.held_polls == 1, what="a held poll")
            mark = held_poll(isolated_home)
            assert mark is not None
            assert (mark["server"], mark["ended"]) == (server.url, None)
            agent.request_stop()  # cuts the held poll short
            assert await task == ExitCode.OK
        ended = held_poll(isolated_home)
        assert ended is not None
        assert ended["ended"] >= ended["since"] == mark["since"]

    asyncio.run(go())


def test_a_start_after_a_crash_during_a_held_poll_says_a_run_may_have_been_lost(
    isolated_home: Path,
) -> None:
    async def go() -> None:
        state = DevState(create_checkin_watcher=False, next_poll_seconds=3600)
        token = state.add_token()
        async with DevServer(state) as server:
            killed = Journal(journal_file(isolated_home))
            killed.poll_held(server.url)  # and no end: the agent died during the poll
            since = held_poll(isolated_home)["since"]  # type: ignore[index]
            killed.close()
            settings = settings_for(server.url, token, isolated_home)
            with capture_logs() as logged:
                task, agent = await started_agent(settings, token, worker_id=WORKER)
                await wait_for_async(lambda: agent.status.state == "idle", what="the first poll")
            assert agent.status.lost_claim == PossiblyLostClaim(server.url, since)
            (problem,) = AgentControl(agent).status()["problems"]
            assert LOST in problem
            assert server.url in problem
            warned = [
                line for line in logged if line["event"] == "a run may have been claimed and lost"
            ]
            assert [line["log_level"] for line in warned] == ["warning"]
            assert LOST in warned[0]["note"]
            shown = await asyncio.to_thread(gather, settings)  # `status`, from the daemon
            assert shown["daemon_running"]
            assert shown["problems"] == [problem]
            agent.request_stop()
            assert await task == ExitCode.OK
        # That poll is over now: a later start (or `status`) has nothing to say about it.
        assert gather(settings)["problems"] == []

    asyncio.run(go())


@pytest.mark.slow
def test_an_agent_killed_during_a_held_poll_is_told_by_status_and_the_next_start(
    lab: Lab,
) -> None:
    lab.state.lane = "automation"  # a server that holds polls
    lab.config.update(shutdown_grace_seconds=1)  # the second agent's stop waits out its poll
    first = lab.start_agent()
    wait_for(lambda: lab.state.held_polls == 1, what="the agent's poll held by the server")
    first.kill()  # SIGKILL: no end of the poll is recorded
    first.communicate(timeout=30)
    shown = lab.run_agent("status")
    assert "agent: not running" in shown.stdout
    assert f"problem: device-agent stopped without ending the poll it sent to {lab.url}" in (
        shown.stdout
    )
    assert LOST in shown.stdout
    second = lab.start_agent()
    problems = wait_for(
        lambda: daemon_status(lab.home).get("problems"), what="the restarted agent's status"
    )
    assert LOST in problems[0]
    code, err = lab.stop_agent(second)
    assert code == 0, err
    assert "a run may have been claimed and lost" in err
