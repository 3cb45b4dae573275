"""`device-agent history`: recent runs from the journal, or one run in full."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from device_agent.commands import fail, settings_from
from device_agent.errors import ExitCode
from device_agent.textformat import duration, format_table, printable, when

if TYPE_CHECKING:
    from device_agent.journal import Journal
    from device_agent.settings import Settings


def cmd_history(args: argparse.Namespace) -> int:
    from device_agent.journal import Journal

    settings = settings_from(args)
    if not settings.paths.journal_file.exists():
        print("no runs yet")
        return ExitCode.OK
    journal = Journal(settings.paths.journal_file)
    try:
        if args.run_id is not None:
            return _show_run(journal, settings, args.run_id, as_json=args.json)
        entries = journal.recent(args.limit)
    finally:
        journal.close()
    if args.json:
        print(json.dumps([e.as_dict() for e in entries], indent=2, default=str))
        return ExitCode.OK
    rows = [
        [
            str(e.run_id),
            printable(e.watcher_name or "-"),
            printable(e.agent_kind or "-"),
            e.state,
            printable(e.answer or "-"),
            duration(e.duration_ms),
            when(e.claimed_at),
        ]
        for e in entries
    ]
    print(
        format_table(
            ["run", "watcher", "executor", "state", "server answer", "took", "claimed"], rows
        )
    )
    return ExitCode.OK


def _show_run(journal: Journal, settings: Settings, run_id: int, *, as_json: bool) -> int:
    matches = journal.with_run_id(run_id)
    if not matches:
        fail(f"run {run_id} is not in the journal ({settings.paths.journal_file})")
        return ExitCode.CONFIG
    for entry in matches:
        if as_json:
            print(json.dumps(entry.as_dict(), indent=2, default=str))
            continue
        for key, value in entry.as_dict().items():
            if key != "output":
                print(f"{key:>15}: {printable(str(value))}")
        print("---- output ----")
        print(printable(entry.output or "", lines=True))
    return ExitCode.OK
