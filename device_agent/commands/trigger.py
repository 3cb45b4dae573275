"""`device-agent trigger`: "Run now" — ask the server to queue a run, then the agent to poll."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from device_agent.commands import settings_from

if TYPE_CHECKING:
    from device_agent.settings import Settings


def cmd_trigger(args: argparse.Namespace) -> int:
    from device_agent.auth.commands import run_now
    from device_agent.commands.control import poke_daemon

    settings = settings_from(args)
    args.lane = _lane(settings, getattr(args, "lane", None))
    return run_now(settings, args, poke=lambda: poke_daemon(settings))


def _lane(settings: Settings, requested: str | None) -> str:
    """`--lane`, else the lane this device last claimed a run of (docs/protocol.md, "Run now")."""
    from device_agent.journal import Journal
    from device_agent.lanes import LANES, trigger_lane

    last_seen = None
    if requested is None and settings.paths.journal_file.exists():
        journal = Journal(settings.paths.journal_file)
        try:
            last_seen = journal.latest_run_type(settings.origin, tuple(LANES))
        finally:
            journal.close()
    return trigger_lane(requested, last_seen).run_type
