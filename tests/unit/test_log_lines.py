"""What a logged event becomes: its JSON line in the log file and its line on the terminal."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog

from device_agent import logs


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def setup(tmp_path: Path, console: io.StringIO | None = None) -> Path:
    log_file = tmp_path / "agent.log"
    logs.setup(log_file=log_file, console_stream=console or io.StringIO())
    return log_file


def lines_of(log_file: Path) -> list[dict[str, Any]]:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return [json.loads(line) for line in log_file.read_text().splitlines()]


def test_a_line_has_its_fields_and_the_event_level_logger_and_utc_time(tmp_path: Path) -> None:
    log_file = setup(tmp_path)
    logs.get_logger("device_agent.x").warning("poll failed", status=503, detail="busy")
    (line,) = lines_of(log_file)
    assert line["event"] == "poll failed"
    assert (line["level"], line["logger"]) == ("warning", "device_agent.x")
    assert (line["status"], line["detail"]) == (503, "busy")
    assert line["timestamp"].endswith("Z")
    assert line["timestamp"][10] == "T"


def test_a_field_never_replaces_the_event_level_logger_or_time(tmp_path: Path) -> None:
    log_file = setup(tmp_path)
    logs.get_logger("device_agent.x").info("real", level="fake", logger="fake", timestamp="0")
    (line,) = lines_of(log_file)
    assert (line["event"], line["level"], line["logger"]) == ("real", "info", "device_agent.x")
    assert line["timestamp"] != "0"


def test_bound_fields_and_a_tasks_context_reach_its_lines_only(tmp_path: Path) -> None:
    log_file = setup(tmp_path)
    log = logs.get_logger("device_agent.x")

    async def run(run_id: int) -> None:
        structlog.contextvars.bind_contextvars(run_id=run_id)
        await asyncio.sleep(0)  # the other task runs and binds its own meanwhile
        log.bind(watcher="w").info("run finished")
        logging.getLogger("httpx").warning("a line of %s", "httpx")  # another library's

    async def both() -> None:
        await asyncio.gather(run(1), run(2))

    asyncio.run(both())
    log.info("after")
    lines = lines_of(log_file)
    finished = [
        (line["run_id"], line["watcher"]) for line in lines if line["event"] == "run finished"
    ]
    assert sorted(finished) == [(1, "w"), (2, "w")]
    foreign = [line for line in lines if line["logger"] == "httpx"]
    assert sorted(line["run_id"] for line in foreign) == [1, 2]
    assert foreign[0]["event"] == "a line of httpx"
    (after,) = [line for line in lines if line["event"] == "after"]
    assert "run_id" not in after
    assert "watcher" not in after


def test_an_exception_is_kept_whole_in_the_file_and_shown_on_the_terminal(tmp_path: Path) -> None:
    console = io.StringIO()
    log_file = setup(tmp_path, console)
    log = logs.get_logger("device_agent.x")
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        log.exception("crashed", run_id=4)
    log.error("a task failed", exc_info=ValueError("bad payload"))
    crashed, failed = lines_of(log_file)
    assert crashed["level"] == "error"
    assert crashed["run_id"] == 4
    assert crashed["exception"].startswith("Traceback (most recent call last):")
    assert crashed["exception"].endswith("ZeroDivisionError: division by zero")
    assert failed["exception"] == "ValueError: bad payload"
    assert "ZeroDivisionError: division by zero\n" in console.getvalue()
    assert "exc_info" not in crashed


def test_what_json_cannot_encode_is_written_as_its_repr(tmp_path: Path) -> None:
    log_file = setup(tmp_path)
    logs.get_logger("device_agent.x").info("paths", where=Path("/tmp/x"), when={1, 2})
    (line,) = lines_of(log_file)
    assert line["where"] == repr(Path("/tmp/x"))
    assert line["when"] == "{1, 2}"


def test_the_terminal_gets_info_and_up_the_file_everything(tmp_path: Path) -> None:
    console = io.StringIO()
    log_file = setup(tmp_path, console)
    log = logs.get_logger("device_agent.x")
    log.debug("a detail")
    log.info("agent starting", concurrency=1, server="http://127.0.0.1:8787")
    assert [line["event"] for line in lines_of(log_file)] == ["a detail", "agent starting"]
    (shown,) = console.getvalue().splitlines()
    assert shown.split(" ", 1)[1] == (
        "[info     ] agent starting                 [device_agent.x] "
        "concurrency=1 server=http://127.0.0.1:8787"
    )


@pytest.mark.parametrize("field", ["token=abcdefghijklmnop", "header=Bearer abcdefghijklmnop"])
def test_on_a_terminal_only_the_level_is_coloured_so_token_shapes_stay_found(
    tmp_path: Path, field: str
) -> None:
    console = Terminal()
    setup(tmp_path, console)
    key, value = field.split("=", 1)
    logs.get_logger("device_agent.x").warning("posting", **{key: value})
    shown = console.getvalue()
    assert "[\x1b[33mwarning  \x1b[0m] posting" in shown
    assert "abcdefghijklmnop" not in shown
    assert shown.count("\x1b[") == 2


def test_the_log_file_keeps_its_last_rotations_and_loses_no_line(tmp_path: Path) -> None:
    setup(tmp_path)
    (to_file,) = [h for h in logging.getLogger().handlers if isinstance(h, logs.LogFile)]
    to_file.maxBytes, to_file.backupCount = 600, 2
    log = logs.get_logger("device_agent.x")
    for n in range(30):
        log.info("a line of about a hundred bytes once rendered", n=n)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["agent.log", "agent.log.1", "agent.log.2"]
    kept = [line["n"] for name in names[::-1] for line in lines_of(tmp_path / name)]
    assert kept == list(range(kept[0], 30))  # the newest lines, in order, none twice
    assert kept[0] > 0  # the oldest rotation was dropped


def test_each_line_is_rendered_once_for_the_file_rotation_included(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_file = setup(tmp_path)
    (to_file,) = [h for h in logging.getLogger().handlers if isinstance(h, logs.LogFile)]
    to_file.maxBytes = 300  # a rotation every few lines
    rendered: list[str] = []
    render = to_file.formatter.format  # type: ignore[union-attr]

    def counting(record: logging.LogRecord) -> str:
        rendered.append(record.getMessage())
        return render(record)

    monkeypatch.setattr(to_file.formatter, "format", counting)
    log = logs.get_logger("device_agent.x")
    for n in range(10):
        log.info("a line of about a hundred bytes once rendered", n=n)
    assert len(rendered) == 10
    assert (tmp_path / "agent.log.1").is_file()
    assert [line["n"] for line in lines_of(log_file)][-1] == 9


def test_a_rotation_that_cannot_rename_keeps_writing_to_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = setup(tmp_path)
    (to_file,) = [h for h in logging.getLogger().handlers if isinstance(h, logs.LogFile)]
    to_file.maxBytes = 100
    log = logs.get_logger("device_agent.x")
    log.info("first line, long enough to fill the hundred bytes")

    def refuse(source: str, target: str) -> None:
        raise PermissionError(13, "Permission denied", source)

    monkeypatch.setattr(os, "rename", refuse)
    log.info("second line")
    assert [line["event"] for line in lines_of(log_file)][-1] == "second line"
    assert "Permission denied" in capsys.readouterr().err  # logging's own error report


def test_the_terminal_shows_control_characters_escaped_and_a_traceback_on_its_lines(
    tmp_path: Path,
) -> None:
    console = Terminal()
    log_file = setup(tmp_path, console)
    log = logs.get_logger("device_agent.x")
    log.warning("cli said\x1b[2J", output="a\x00b\rc\nd\x9b", argv=["x\x00"])
    logging.getLogger("httpx").warning("foreign \x07 line")
    try:
        raise RuntimeError("title \x1b]0;pwned\x07 set")
    except RuntimeError:
        log.exception("crashed")
    shown = console.getvalue()
    colour = {"\x1b[33m", "\x1b[31m", "\x1b[0m"}  # the level tags' own codes
    for code in colour:
        shown = shown.replace(code, "")
    assert not [c for c in shown if (c < " " and c != "\n") or "\x7f" <= c <= "\x9f"]
    assert "cli said\\x1b[2J" in shown
    assert "output=a\\x00b\\x0dc\\x0ad\\x9b" in shown
    assert "argv=['x\\x00']" in shown
    assert "foreign \\x07 line" in shown
    assert "RuntimeError: title \\x1b]0;pwned\\x07 set" in shown
    lines = shown.splitlines()
    assert len(lines) > 4  # one line per event, and the traceback on lines of its own
    assert lines[3].startswith("Traceback (most recent call last):")
    # The file keeps the text itself: JSON escapes it, and `logs` / `history` show it escaped.
    first = lines_of(log_file)[0]
    assert (first["event"], first["output"]) == ("cli said\x1b[2J", "a\x00b\rc\nd\x9b")


def test_the_log_file_and_its_rotations_are_the_owners_only_whatever_the_umask(
    tmp_path: Path,
) -> None:
    previous = os.umask(0o022)
    try:
        setup(tmp_path)
        (to_file,) = [h for h in logging.getLogger().handlers if isinstance(h, logs.LogFile)]
        to_file.maxBytes = 300
        log = logs.get_logger("device_agent.x")
        for n in range(10):
            log.info("a line of about a hundred bytes once rendered", n=n)
    finally:
        os.umask(previous)
    files = sorted(tmp_path.iterdir())
    assert [p.name for p in files] == ["agent.log", "agent.log.1", "agent.log.2", "agent.log.3"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}


def test_a_warning_before_setup_is_a_readable_redacted_line_on_stderr() -> None:
    code = (
        "from device_agent import logs\n"
        "logs.get_logger('device_agent.x').warning('token refused', header='Bearer "
        "abcdefghijklmnop', status=401)\n"
        "logs.get_logger('device_agent.x').info('not shown')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.split(" ", 1)[1] == (
        "[warning  ] token refused                  [device_agent.x] "
        "header=Bearer [REDACTED] status=401"
    )
