"""The run board: elapsed time and a bounded, clean output tail per running run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from device_agent.agent.activity import RunBoard
from device_agent.desktop.control import ControlServer
from device_agent.desktop.control_client import Target, request
from tests.support.clock import FakeClock

INBOX = Target("12", "watcher", "Inbox digest")
NIGHTLY = Target("a1", "automation", "Nightly")


def test_a_running_run_shows_elapsed_time_and_the_tail_of_its_output() -> None:
    clock = FakeClock(100.0)
    board = RunBoard(clock=clock, tail_chars=10)
    board.started(7, INBOX)
    clock.advance(42.25)
    board.output(7, "\x1b[32mline one\x1b[0m\n")
    board.output(7, "line two")
    assert board.runs() == [
        {
            "run_id": 7,
            "lane": "watcher",
            "target_id": "12",
            "name": "Inbox digest",
            "elapsed_seconds": 42.2,
            "output_tail": "e\nline two",
        }
    ]
    board.finished(7)
    assert board.runs() == []
    board.output(7, "late output of a finished run is ignored")
    assert board.runs() == []


def test_targets_are_remembered_newest_first_and_bounded() -> None:
    board = RunBoard(max_targets=2)
    board.started(1, INBOX)
    board.remember(NIGHTLY)
    board.remember(INBOX)
    assert board.targets() == [INBOX, NIGHTLY]
    board.remember(Target("13", "watcher", "Third"))
    assert board.targets() == [Target("13", "watcher", "Third"), INBOX]


class BoardHandler:
    """A handler as the dispatcher will write it: status and targets come from a RunBoard."""

    def __init__(self, board: RunBoard) -> None:
        self.board = board

    def status(self) -> dict[str, Any]:
        runs = self.board.runs()
        return {"state": "busy" if runs else "idle", "runs": runs}

    def poll_now(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def targets(self) -> list[Target]:
        return self.board.targets()

    async def trigger(self, target_id: str, lane: str | None) -> dict[str, Any]:
        return {}


def test_status_over_the_socket_shows_a_running_runs_elapsed_time_and_tail(
    tmp_path: Path,
) -> None:
    clock = FakeClock(100.0)
    board = RunBoard(clock=clock)
    path = tmp_path / "control.sock"

    async def main() -> dict[str, Any]:
        async with ControlServer(path, BoardHandler(board)):
            board.started(3, INBOX)
            clock.advance(65)
            board.output(3, "Reading 40 mails…\n")
            return await asyncio.to_thread(request, path, "status", 10.0)

    [run] = asyncio.run(main())["runs"]
    assert run["elapsed_seconds"] == 65.0
    assert run["output_tail"] == "Reading 40 mails…\n"
    assert run["name"] == "Inbox digest"
