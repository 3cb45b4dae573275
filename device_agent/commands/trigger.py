"""`device-agent trigger`: "Run now" — queue a watcher and poke the running agent."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from device_agent.commands import fail, settings_from
from device_agent.errors import ExitCode

if TYPE_CHECKING:
    from device_agent.settings import Settings


def cmd_trigger(args: argparse.Namespace) -> int:
    from device_agent.credentials import resolve_token

    settings = settings_from(args)
    token = resolve_token(settings)
    code, message = asyncio.run(_trigger(settings.origin, token, args.watcher_id))
    (print if code == ExitCode.OK else fail)(message)
    if code == ExitCode.OK:
        _poke_running_agent(settings)
    return code


async def _trigger(server: str, token: str, watcher_id: str) -> tuple[int, str]:
    from device_agent.client import AnswerKind, LobuClient
    from device_agent.lanes.watcher import WATCHER

    async with LobuClient(server, lambda: token) as client:
        answer = await client.run_now(WATCHER.trigger_route(watcher_id), watcher_id=watcher_id)
    if answer.ok and isinstance(answer.body, dict):
        run_id = answer.body.get("run_id")
        again = " (it was already queued)" if answer.body.get("already_queued") else ""
        return ExitCode.OK, f"queued run {run_id} for watcher {watcher_id}{again}"
    code = {AnswerKind.AUTH: ExitCode.AUTH, AnswerKind.TRANSIENT: ExitCode.UNREACHABLE}.get(
        answer.kind, ExitCode.CONFIG
    )
    return code, f"could not trigger watcher {watcher_id}: {answer.describe()}"


def _poke_running_agent(settings: Settings) -> None:
    """Make a running agent poll now instead of at its next interval."""
    from device_agent.commands.control import poke_daemon

    said = poke_daemon(settings)
    if said:
        print(said)
