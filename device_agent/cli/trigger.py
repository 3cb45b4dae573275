"""`device-agent trigger`: "Run now" — ask the server to queue a run, then the agent to poll.

With an agent running for this state dir the request goes over its control socket
(docs/desktop.md, "control socket"): the daemon asks the server and polls at once. With no
agent running it asks the server itself (`identity.commands.run_now`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from device_agent.cli.output import fail
from device_agent.desktop.control_client import (
    LANES,
    POKED,
    ControlError,
    DaemonNotRunning,
    Refusal,
    request,
    socket_path,
)
from device_agent.errors import ExitCode
from device_agent.paths import Paths

if TYPE_CHECKING:
    from device_agent.config import Settings


def add_trigger_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("item_id", metavar="ID", help="the watcher's (or automation's) number")
    parser.add_argument(
        "--lane",
        choices=LANES,
        help="the kind of ID (default: the lane of the run this device claimed last, else watcher)",
    )


def cmd_trigger(args: argparse.Namespace) -> int:
    lane = getattr(args, "lane", None)
    if getattr(args, "server", None) is None:  # `--server` names a server: ask it directly
        answered = _through_daemon(state_dir(os.environ), args.item_id, lane)
        if answered is not None:
            return answered
    return _directly(args, lane)


def state_dir(env: Mapping[str, str]) -> Path:
    """The state dir `Settings.paths` resolves, without loading the settings: the control
    socket is all this command needs to find while an agent runs."""
    return Paths.resolve(env).state_dir


def _through_daemon(state: Path, item_id: str, lane: str | None) -> int | None:
    """Ask the running agent to Run now; its exit code, or None when the command must ask
    the server itself (no agent running, or one that could not do it)."""
    try:
        # The daemon's own deadline for a trigger is 60 s; wait a little longer for its answer.
        answer = request(socket_path(state), "trigger", timeout=65.0, target_id=item_id, lane=lane)
    except DaemonNotRunning:
        return None
    except Refusal as exc:
        if exc.exit_code is None:  # e.g. an older daemon without `trigger`: ask directly
            print(f"device-agent: {exc}; asking the server directly", file=sys.stderr)
            return None
        fail(exc.reason)
        return exc.exit_code
    except ControlError as exc:  # no answer at all: it may or may not have asked the server
        fail(f"{exc}; the run may still have been queued: check `device-agent status`")
        return ExitCode.INTERNAL
    print(answer.get("message") or f"{lane or 'watcher'} {item_id}: asked the running agent")
    print(POKED)
    return ExitCode.OK


def _directly(args: argparse.Namespace, lane: str | None) -> int:
    """No agent is running (or `--server` names a server): ask the server ourselves. This
    path needs the settings, the journal, the lanes and the HTTP stack; the usual one, with
    an agent running, needs only its control socket, so they are imported here."""
    from device_agent.cli.common import settings_from
    from device_agent.cli.control import poke_daemon
    from device_agent.identity.commands import run_now

    settings = settings_from(args)
    args.lane = _lane(settings, lane)
    return run_now(settings, args, poke=lambda: poke_daemon(settings))


def _lane(settings: Settings, requested: str | None) -> str:
    """`--lane`, else the lane this device last claimed a run of (docs/protocol.md, "Run now")."""
    from device_agent.agent.journal import Journal
    from device_agent.lanes import RUN_NOW_LANES, trigger_lane

    last_seen = None
    if requested is None and settings.paths.journal_file.exists():
        journal = Journal(settings.paths.journal_file)
        try:
            last_seen = journal.latest_run_type(settings.origin, RUN_NOW_LANES)
        finally:
            journal.close()
    return trigger_lane(requested, last_seen).run_type
