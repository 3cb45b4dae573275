from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from device_agent import logs
from device_agent.agent.lock import AlreadyRunning, InstanceLock
from device_agent.config import load
from device_agent.identity.worker_id import resolve_worker_id
from device_agent.redaction import Redactor

SECRET = "owl_pat_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def test_logs_redact_tokens_in_file_and_console(tmp_path: Path) -> None:
    console = io.StringIO()
    log_file = tmp_path / "agent.log"
    logs.setup(log_file=log_file, console_stream=console, secrets=("my-oauth-token-value",))
    log = logs.get_logger("test")
    log.info("posting", header=f"Bearer {SECRET}", body={"access_token": "abcdefghijkl"})
    log.warning("oauth", token="my-oauth-token-value", run_id=3)
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        log.exception("crashed")
    logging.getLogger("httpx").warning("url with %s", SECRET)
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = console.getvalue() + log_file.read_text()
    assert SECRET not in text
    assert "abcdefghijkl" not in text
    assert "my-oauth-token-value" not in text
    assert text.count("[REDACTED]") >= 5
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert any(line.get("run_id") == 3 for line in lines)


@pytest.mark.parametrize(
    "line",
    [
        f"Authorization: BEARER {SECRET[8:]}",
        "TOKEN=abcdefghijklmnop",
        '{"Refresh_Token": "abcdefghijklmnop"}',
        f"a pasted {SECRET} in a URL",
    ],
)
def test_token_shapes_are_redacted_whatever_their_case(line: str) -> None:
    assert "[REDACTED]" in Redactor()(line)
    assert "abcdefghijklmnop" not in Redactor()(line)
    assert SECRET[8:] not in Redactor()(line)


def test_a_line_with_no_token_word_is_left_as_it_is() -> None:
    line = "run finished exit_code=0 output='a long line of plain words, 0123456789abcdef'"
    assert Redactor()(line) == line


def test_the_log_file_rotates_at_its_size_and_loses_or_doubles_no_line(tmp_path: Path) -> None:
    log_file = tmp_path / "agent.log"
    logs.setup(log_file=log_file, console_stream=io.StringIO())
    (to_file,) = [h for h in logging.getLogger().handlers if isinstance(h, logs.LogFile)]
    assert (to_file.maxBytes, to_file.backupCount) == (logs.MAX_BYTES, logs.KEEP)
    to_file.maxBytes = 2000
    log = logs.get_logger("test")
    for n in range(40):
        log.info("a line of about a hundred bytes once rendered as JSON", n=n)
    rotated = tmp_path / "agent.log.1"
    assert rotated.is_file()
    assert rotated.stat().st_size <= 2000  # rotated before the line that would pass the size
    kept = [
        json.loads(line)["n"] for p in (rotated, log_file) for line in p.read_text().splitlines()
    ]
    assert kept == list(range(kept[0], 40))  # nothing lost or doubled at a rotation


def test_no_console_handler_renders_lines_for_dev_null(tmp_path: Path) -> None:
    with open(os.devnull, "w") as null:
        logs.setup(log_file=tmp_path / "agent.log", console_stream=null)
        streams = [
            h.stream
            for h in logging.getLogger().handlers
            if type(h) is logging.StreamHandler  # not the file handler (a subclass)
        ]
    assert streams == []
    logs.setup(log_file=tmp_path / "agent.log", console_stream=sys.stderr)
    assert any(type(h) is logging.StreamHandler for h in logging.getLogger().handlers)


def test_short_values_are_not_treated_as_secrets() -> None:
    redactor = Redactor()
    redactor.add("abc")
    assert redactor("abc def") == "abc def"


def test_lock_blocks_a_second_holder_and_names_the_pid(tmp_path: Path) -> None:
    path = tmp_path / "agent.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from device_agent.agent.lock import InstanceLock; "
            f"l = InstanceLock(__import__('pathlib').Path({str(path)!r})); l.acquire(); "
            "print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(AlreadyRunning, match=f"PID {holder.pid}"):
            InstanceLock(path).acquire()
    finally:
        holder.kill()
        holder.wait()
    # The holder died without cleaning up: its lock must not block a restart.
    with InstanceLock(path):
        assert path.read_text().strip() == str(os.getpid())


def test_worker_id_is_generated_once_and_kept(isolated_home: Path) -> None:
    settings = load()
    first = resolve_worker_id(settings)
    assert first.startswith(f"{settings.platform}:")
    assert resolve_worker_id(load()) == first
    assert resolve_worker_id(load(overrides={"worker_id": "chosen"})) == "chosen"


def test_holder_pid_asks_the_lock_not_a_stale_file(tmp_path: Path) -> None:
    from device_agent.agent.lock import holder_pid

    path = tmp_path / "agent.lock"
    assert holder_pid(path) is None
    path.write_text("1\n")  # a PID left behind by a dead agent, now some other program's
    assert holder_pid(path) is None
    with InstanceLock(path):
        assert holder_pid(path) == os.getpid()
