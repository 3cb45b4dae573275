"""`device-agent status`: what the agent is doing, from its status file and journal."""

from __future__ import annotations

import argparse
import json
from typing import Any

from device_agent.commands import settings_from
from device_agent.errors import ExitCode
from device_agent.textformat import ago, printable


def cmd_status(args: argparse.Namespace) -> int:
    from device_agent.journal import Journal, JournalState
    from device_agent.lock import holder_pid
    from device_agent.statusfile import read_status

    settings = settings_from(args)
    status = read_status(settings.paths.state_dir / "status.json") or {}
    alive = holder_pid(settings.paths.lock_file) is not None
    counts: dict[str, int] = {}
    dead: list[dict[str, Any]] = []
    if settings.paths.journal_file.exists():
        journal = Journal(settings.paths.journal_file)
        try:
            counts = journal.counts()
            dead = [e.as_dict() for e in journal.in_state(JournalState.DEAD)]
        finally:
            journal.close()
    report = {
        "running": alive,
        "agent": status,
        "journal": counts,
        "undelivered": counts.get(JournalState.FINISHED, 0),
        "dead_letters": dead,
    }
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return ExitCode.OK
    _print_status(report)
    return ExitCode.OK


def _print_status(report: dict[str, Any]) -> None:
    agent = report["agent"]
    if report["running"]:
        print(
            f"agent: running (PID {agent.get('pid')}), {agent.get('state')}"
            + (f" — {printable(str(agent['detail']))}" if agent.get("detail") else "")
        )
        for run_id, name in (agent.get("running") or {}).items():
            print(f"  running run {run_id}: {printable(str(name))}")
    elif agent:
        print(
            f"agent: not running (last state: {agent.get('state')}, {ago(agent.get('updated_at'))})"
        )
    else:
        print("agent: not running (no state yet)")
    if agent.get("last_error"):
        print(f"last problem: {printable(str(agent['last_error']))}")
    print(f"results waiting to be delivered: {report['undelivered']}")
    for entry in report["dead_letters"]:
        print(
            f"  REJECTED run {entry['run_id']} ({entry['watcher_name']}): "
            f"{entry['server_message']} — output kept: device-agent history --run {entry['run_id']}"
        )
