"""What `status`, `history` and `doctor` show of the journal (issue 27): its size, the runs
without their outputs, and a poll the last agent left held."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from device_agent.agent.journal import ACKNOWLEDGED, Journal
from device_agent.agent.result import ExitReason, Report
from device_agent.agent.status import UNHEARD_RUN_REAPED_SECONDS, PossiblyLostClaim, Status
from device_agent.cli import doctor
from device_agent.cli.main import main
from device_agent.cli.status import gather, render
from device_agent.config import Paths, Settings, validate

SERVER = "http://127.0.0.1:9"
LOST = "may have handed that poll a run"


def settings_of(home: Path) -> Settings:
    return validate(Settings(server=SERVER, paths=Paths.resolve({"DEVICE_AGENT_HOME": str(home)})))


def journal_of(home: Path, clock: float | None = None) -> Journal:
    path = home / "state" / "journal.sqlite3"
    return Journal(path) if clock is None else Journal(path, clock=lambda: clock)


def one_run(journal: Journal, run_id: int, output: str) -> None:
    journal.record_claim(
        SERVER,
        run_id,
        run_type="watcher",
        watcher_id="1",
        watcher_name="digest",
        agent_kind="claude-code",
        payload_digest="d",
    )
    journal.record_result(SERVER, run_id, Report(output, None, 5, 0, None, ExitReason.OK))
    journal.settle(SERVER, run_id, state=ACKNOWLEDGED, answer="ok", message=None)


def test_status_shows_the_journals_size_and_runs(isolated_home: Path) -> None:
    journal = journal_of(isolated_home)
    for run_id in (1, 2):
        one_run(journal, run_id, "x" * 100_000)
    journal.close()
    report = gather(settings_of(isolated_home))
    about = report["journal"]
    assert about["runs"] == 2
    assert about["bytes"] > 0
    assert about["path"] == str(isolated_home / "state" / "journal.sqlite3")
    line = next(line for line in render(report).splitlines() if "journal:" in line)
    assert f"MiB, 2 runs ({about['path']})" in line


def test_status_says_no_journal_yet_and_creates_none(isolated_home: Path) -> None:
    report = gather(settings_of(isolated_home))
    assert report["journal"]["bytes"] == 0
    assert "journal:    none yet" in render(report)
    assert not (isolated_home / "state" / "journal.sqlite3").exists()


def test_status_without_a_daemon_says_a_run_may_have_been_lost_in_a_held_poll(
    isolated_home: Path,
) -> None:
    journal = journal_of(isolated_home)
    journal.poll_held(SERVER)  # and the agent was killed: no end
    journal.close()
    report = gather(settings_of(isolated_home))
    assert not report["daemon_running"]
    (problem,) = report["problems"]
    assert LOST in problem
    assert SERVER in problem
    assert f"problem: {problem}" in render(report)


def test_a_held_poll_past_the_servers_two_hours_is_not_shown(isolated_home: Path) -> None:
    journal = journal_of(isolated_home, clock=time.time() - UNHEARD_RUN_REAPED_SECONDS - 60)
    journal.poll_held(SERVER)
    journal.close()
    assert gather(settings_of(isolated_home))["problems"] == []  # the server reaped it by now


def test_the_note_of_a_possibly_lost_run_says_until_when_and_then_goes() -> None:
    since = time.time()
    status = Status(lost_claim=PossiblyLostClaim(SERVER, since))
    (note,) = status.notes(since + 60)
    reaped = time.strftime("%H:%M", time.localtime(since + UNHEARD_RUN_REAPED_SECONDS))
    assert f"by about {reaped}" in note
    assert "nothing was executed here" in note
    assert status.notes(since + UNHEARD_RUN_REAPED_SECONDS) == []


def test_history_lists_runs_without_their_output_and_shows_it_for_one_run(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = journal_of(isolated_home)
    one_run(journal, 1, "the answer")
    journal.close()
    assert main(["history", "--json", "--server", SERVER]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert "output" not in listed
    assert listed["output_bytes"] == len("the answer")
    assert main(["history", "--run", "1", "--json", "--server", SERVER]) == 0
    assert json.loads(capsys.readouterr().out)["output"] == "the answer"


def test_doctor_shows_the_journals_size_and_what_it_keeps(isolated_home: Path) -> None:
    journal = journal_of(isolated_home)
    one_run(journal, 1, "y" * 200_000)
    journal.close()
    check = doctor._journal(settings_of(isolated_home))
    assert check.ok is None  # worth knowing, not a problem
    assert "MiB, 1 run (" in check.detail
    assert "keeps 1000 settled runs for up to 30 days, 32768 bytes of each" in check.detail


def test_doctor_fails_a_journal_that_cannot_be_opened(isolated_home: Path) -> None:
    path = isolated_home / "state" / "journal.sqlite3"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database" * 100)
    check = doctor._journal(settings_of(isolated_home))
    assert check.ok is False
    assert "move it aside" in check.detail
