"""What a person sees from each command (issue 12): pipes, help, history, logs, run's
start-up check and doctor."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from device_agent.agent.journal import ACKNOWLEDGED, DEAD, Journal
from device_agent.agent.result import ExitReason, Report, failure
from device_agent.cli.logs import follow, render
from device_agent.cli.main import _parser, main

SERVER = "http://127.0.0.1:9"


def _journal(home: Path) -> Journal:
    path = home / "state" / "journal.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return Journal(path)


def _claim(journal: Journal, run_id: int, name: str) -> None:
    journal.record_claim(
        SERVER,
        run_id,
        run_type="watcher",
        watcher_id=str(run_id * 10),
        watcher_name=name,
        agent_kind="claude-code",
        payload_digest="d",
    )


def _sample_runs(home: Path) -> None:
    journal = _journal(home)
    try:
        _claim(journal, 1, "Done fine")
        journal.record_result(
            SERVER,
            1,
            Report("all good", None, 2500, 0, None, ExitReason.OK, {"cost_usd": 0.04}),
        )
        journal.settle(SERVER, 1, state=ACKNOWLEDGED, answer="ok", message=None)
        _claim(journal, 2, "No binary")
        journal.record_result(SERVER, 2, failure("claude binary not found on PATH"))
        journal.settle(SERVER, 2, state=ACKNOWLEDGED, answer="ok", message=None)
        _claim(journal, 3, "Refused")
        journal.record_result(SERVER, 3, Report("kept", None, 10, 0, None, ExitReason.OK))
        journal.settle(SERVER, 3, state=DEAD, answer="rejected", message="HTTP 404 Run not found")
        _claim(journal, 4, "Still going")
    finally:
        journal.close()


# ---------------------------------------------------------------- item 5: pipes


def test_a_closed_pipe_is_not_a_traceback(isolated_home: Path) -> None:
    _sample_runs(isolated_home)
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before we write: `| head` that already quit
    try:
        done = subprocess.run(
            [sys.executable, "-m", "device_agent", "history", "--json"],
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(writer)
    assert "Traceback" not in done.stderr
    assert "BrokenPipe" not in done.stderr
    assert done.returncode == 0


# ---------------------------------------------------------------- item 11: help


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices)


def test_every_command_and_option_says_what_it_does() -> None:
    listed = {
        a.dest
        for a in _parser()._subparsers._group_actions[0]._choices_actions  # type: ignore[union-attr]
        if a.help
    }
    for name, command in _subcommands().items():
        assert name in listed, f"{name} has no summary in `device-agent --help`"
        assert command.description, f"{name} --help has no description"
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"


def test_the_readme_lists_every_command() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    commands = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    for name in _subcommands():
        assert f"device-agent {name}" in commands, f"README's Commands lacks {name}"


# ---------------------------------------------------------------- item 9: history


def test_history_says_states_in_words_with_the_error(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _sample_runs(isolated_home)
    assert main(["history", "--server", SERVER]) == 0
    table = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert "succeeded" in table["1"]
    assert "failed" in table["2"]
    assert "claude binary not found on PATH" in table["2"]
    assert "refused by server" in table["3"]
    assert "server: HTTP 404 Run not found" in table["3"]
    assert "running" in table["4"]
    assert "claimed" not in "".join(table.values())


def test_history_run_shows_times_a_person_reads(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _sample_runs(isolated_home)
    assert main(["history", "--run", "1"]) == 0
    shown = capsys.readouterr().out
    assert "None" not in shown
    assert "{'" not in shown
    assert "cost_usd: 0.04" in shown
    started = next(line for line in shown.splitlines() if "started:" in line)
    assert started.split("started: ")[1][:2] == "20"  # a date, not epoch seconds
    assert "---- output ----\nall good" in shown


def test_history_json_has_iso_times(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _sample_runs(isolated_home)
    assert main(["history", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert all(r["claimed_at"].endswith("+00:00") for r in runs)


# ---------------------------------------------------------------- item 10: logs


def _log_line(**fields: object) -> str:
    return json.dumps({"timestamp": "2026-11-30T08:00:00.1Z", "level": "info", **fields}) + "\n"


def test_logs_shows_one_runs_lines(isolated_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = isolated_home / "logs" / "device-agent.log"
    log.parent.mkdir(parents=True)
    log.write_text(
        _log_line(event="claimed run", run_id=7)
        + _log_line(event="polled", worker="w")
        + _log_line(event="run ended", run_id=8)
    )
    assert main(["logs", "--run", "7"]) == 0
    out = capsys.readouterr().out
    assert "2026-11-30 08:00:00 info    claimed run run_id=7" in out
    assert "polled" not in out
    assert "run_id=8" not in out


def test_follow_yields_lines_as_they_are_written(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text(_log_line(event="first"))
    lines = follow(log, 0, interval=0.01)
    assert "first" in render(next(lines))
    with log.open("a") as out:
        out.write(_log_line(event="second"))
    assert "second" in render(next(lines))


def test_asyncio_selector_noise_is_not_logged(tmp_path: Path) -> None:
    from device_agent import logs

    log = tmp_path / "agent.log"
    logs.setup(log_file=log, console_level=logging.DEBUG, console_stream=io.StringIO())
    logging.getLogger("asyncio").debug("Using selector: EpollSelector")
    assert "Using selector" not in log.read_text()


# ----------------------------------------------------------- item 2: run checks executors


def test_run_refuses_to_start_without_the_default_agents_profile(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["run", "--once", "--server", SERVER, "--agent", "no-such-agent"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "default_agent 'no-such-agent' is not an executor profile" in err


def test_run_refuses_to_start_when_the_default_agents_cli_is_missing(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    executors = isolated_home / "config" / "executors"
    executors.mkdir(parents=True)
    (executors / "mine.toml").write_text('binary = "not-installed-anywhere-xyz"\nargs = []\n')
    code = main(["run", "--once", "--server", SERVER, "--agent", "mine"])
    assert code == 2
    assert "needs not-installed-anywhere-xyz, which is not on the PATH" in capsys.readouterr().err


# ------------------------------------------------------------- items 3 and 12: doctor


def test_doctor_never_runs_a_users_command_to_probe_it(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = tmp_path / "it-ran"
    script = tmp_path / "my-agent"
    script.write_text(f"#!/bin/sh\ntouch {ran}\n")
    script.chmod(0o755)
    executors = isolated_home / "config" / "executors"
    executors.mkdir(parents=True)
    (executors / "command.toml").write_text(f'argv = ["{script}"]\n')
    main(["doctor"])
    shown = capsys.readouterr().out
    assert not ran.exists()
    assert f"executor command: found at {script} (not run to ask its version" in shown


def test_doctor_asks_a_command_its_version_when_its_profile_says_how(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "my-agent"
    script.write_text('#!/bin/sh\necho "my-agent 1.2 ($1)"\n')
    script.chmod(0o755)
    executors = isolated_home / "config" / "executors"
    executors.mkdir(parents=True)
    (executors / "command.toml").write_text(f'argv = ["{script}"]\nversion_args = ["--about"]\n')
    main(["doctor"])
    assert "(my-agent 1.2 (--about))" in capsys.readouterr().out


def test_doctor_shows_the_config_file_the_executors_dir_and_where_clis_are(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["doctor"])
    shown = capsys.readouterr().out
    assert f"config file: {isolated_home / 'config' / 'config.toml'}" in shown
    assert f"executors dir: {isolated_home / 'config' / 'executors'}" in shown
    assert f"executor demo: found at {Path(sys.executable).parent}" in shown


def test_doctor_says_which_agent_kinds_a_current_server_is_offered(
    isolated_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.support.agent import install_fake

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.local/bin with a real CLI in it
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    main(["doctor"])
    assert "agent kinds offered to current servers: none" in capsys.readouterr().out

    install_fake(tmp_path / "bin", "claude")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    main(["doctor"])
    assert "agent kinds offered to current servers: claude-code" in capsys.readouterr().out


def test_the_demo_agent_shows_a_window_with_both_dates() -> None:
    from device_agent.demo.watcher_cli import summarize

    prompt = (
        "Say hi\nWatcher: Hello\nWindow start: 2026-11-29T00:00:00.000Z\n"
        "Window end: 2026-11-30T00:00:00.000Z\n"
    )
    assert "in 2026-11-29 00:00 – 2026-11-30 00:00 " in summarize(prompt)


def test_doctor_says_whether_a_daily_limit_is_set(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["doctor"])
    assert "[ -- ] daily limit: off: a server may run as much as it likes here" in (
        capsys.readouterr().out
    )
    config = isolated_home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[limits]\ndaily_usd = 5\ndaily_runs = 1\n")
    main(["doctor"])
    assert "[ok  ] daily limit: $5.00, 1 run a day (the local calendar day)" in (
        capsys.readouterr().out
    )
