"""`device-agent trigger`: "Run now" — queue a watcher and poke the running agent."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from device_agent.commands import fail, settings_from
from device_agent.errors import ExitCode

if TYPE_CHECKING:
    from device_agent.client import Answer
    from device_agent.settings import Settings


def cmd_trigger(args: argparse.Namespace) -> int:
    from device_agent.credentials import resolve_token

    settings = settings_from(args)
    token = resolve_token(settings)
    lane = _lane(settings, getattr(args, "lane", None))
    code, message = asyncio.run(_trigger(settings.origin, token, args.watcher_id, lane))
    (print if code == ExitCode.OK else fail)(message)
    if code == ExitCode.OK:
        _poke_running_agent(settings)
    return code


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


async def _trigger(server: str, token: str, item_id: str, lane: str) -> tuple[int, str]:
    from device_agent.client import AnswerKind, LobuClient
    from device_agent.lanes import LANES

    route = LANES[lane].trigger_route(item_id)
    async with LobuClient(server, lambda: token) as client:
        if lane == "watcher":
            answer = await client.run_now(route, watcher_id=item_id)
        else:  # only a device-bound token may queue an automation (no tool-proxy route)
            answer = await client.trigger(route)
    if answer.ok and isinstance(answer.body, dict):
        run_id = answer.body.get("run_id")
        again = " (it was already queued)" if answer.body.get("already_queued") else ""
        return ExitCode.OK, f"queued run {run_id} for {lane} {item_id}{again}"
    code = {AnswerKind.AUTH: ExitCode.AUTH, AnswerKind.TRANSIENT: ExitCode.UNREACHABLE}.get(
        answer.kind, ExitCode.CONFIG
    )
    return code, f"could not trigger {lane} {item_id}: {answer.describe()}{_hint(answer, lane)}"


def _hint(answer: Answer, lane: str) -> str:
    """A plain next step for the refusals a user can fix."""
    if answer.status is None:
        return ""
    if answer.status == 404:
        other = "automation" if lane == "watcher" else "watcher"
        return f" — check the id, or pass --lane {other} if it is an {other}'s id"
    if answer.status == 403 and "not bound" in answer.message:
        return " — run `device-agent login` to get a token bound to this device"
    return ""


def _poke_running_agent(settings: Settings) -> None:
    """Make a running agent poll now instead of at its next interval."""
    from device_agent.commands.control import poke_daemon

    said = poke_daemon(settings)
    if said:
        print(said)
