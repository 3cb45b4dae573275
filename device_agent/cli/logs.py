"""`device-agent logs [-f] [--run ID]`: the agent's log, readable, from wherever it lives.

The log file holds one JSON object a line (`device_agent.logs`); this shows each
as `time level event key=value …`, optionally only one run's lines, and with
`-f` keeps printing what the agent writes (checking the file's size now and
then: no busy loop, and it follows a rotation too).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final

from device_agent.cli.common import settings_from
from device_agent.cli.output import fail, printable
from device_agent.errors import ExitCode

FOLLOW_INTERVAL: Final = 0.5  # seconds between looks at the file while following
_HEAD: Final = ("timestamp", "level", "event", "logger")


def cmd_logs(args: argparse.Namespace) -> int:
    path = settings_from(args).paths.log_file
    if not path.exists() and not args.follow:
        fail(f"no log yet at {path}: it appears once `device-agent run` has started")
        return ExitCode.CONFIG
    print(f"==> {path} <==")
    run_id: int | None = args.run_id

    def with_run(line: str) -> bool:
        return run_id is None or _of_run(line, run_id)

    position = 0
    if path.exists():
        with path.open(encoding="utf-8", errors="replace") as log:
            for line in deque(filter(with_run, log), maxlen=args.lines):
                print(render(line))
            position = log.tell()
    if args.follow:
        for line in follow(path, position):
            if with_run(line):
                print(render(line), flush=True)
    return ExitCode.OK


def follow(path: Path, position: int, interval: float = FOLLOW_INTERVAL) -> Iterator[str]:
    """Lines appended to `path` after `position`, forever; starts over when the file shrinks
    (the log rotated). Ends only with Ctrl-C."""
    while True:
        size = path.stat().st_size if path.exists() else 0
        if size < position:
            position = 0
        if size > position:
            with path.open(encoding="utf-8", errors="replace") as log:
                log.seek(position)
                yield from _whole_lines(log)
                position = log.tell()
        time.sleep(interval)  # a command, not the agent's loop: a plain sleep is right here


def _whole_lines(log: Iterable[str]) -> Iterator[str]:
    for line in log:
        if line.endswith("\n"):
            yield line


def _of_run(line: str, run_id: int) -> bool:
    entry = _parsed(line)
    return entry is not None and entry.get("run_id") == run_id


def render(line: str) -> str:
    """One JSON log line as `time level event key=value …`; other lines as they are."""
    entry = _parsed(line)
    if entry is None:
        return printable(line.rstrip("\n"))
    stamp = str(entry.get("timestamp", ""))[:19].replace("T", " ")
    rest = " ".join(f"{k}={_value(v)}" for k, v in entry.items() if k not in _HEAD)
    text = f"{stamp} {entry.get('level', '')!s:<7} {entry.get('event', '')} {rest}"
    return printable(text.rstrip(), lines=True)


def _parsed(line: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _value(value: object) -> str:
    return value if isinstance(value, str) and " " not in value else json.dumps(value)
