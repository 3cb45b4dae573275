"""`device-agent pause` and `resume [--past-limit]`, and the poke `trigger` gives a running
daemon.

Each talks to the daemon over its control socket (docs/desktop.md, "control socket").
"""

from __future__ import annotations

import argparse
from typing import Any

from device_agent.agent.limits import plural, usd
from device_agent.cli.common import settings_from
from device_agent.cli.output import fail
from device_agent.config import Settings
from device_agent.desktop.control_client import (
    POKED,
    ControlError,
    DaemonNotRunning,
    request,
    socket_path,
)
from device_agent.errors import ExitCode


def ask_daemon(settings: Settings, op: str, **args: Any) -> dict[str, Any]:
    """Send `op` to the daemon of this state dir. Raises `control_client.ControlError`
    (`DaemonNotRunning` when none answers)."""
    return request(socket_path(settings.paths.state_dir), op, **args)


def poke_daemon(settings: Settings) -> str | None:
    """Ask the running daemon to poll now (after "Run now"); one line saying what happened."""
    try:
        ask_daemon(settings, "poll_now")
    except DaemonNotRunning:
        return "no agent is running here; the run waits until one polls"
    except ControlError as exc:
        return f"could not ask the running agent to poll now ({exc}); it picks the run up later"
    return POKED


def cmd_pause(args: argparse.Namespace) -> int:
    return _switch(args, "pause", "paused: no new runs are claimed; running ones finish")


def cmd_resume(args: argparse.Namespace) -> int:
    if getattr(args, "past_limit", False):
        return _past_limit(args)
    return _switch(args, "resume", "resumed: polling now")


def _past_limit(args: argparse.Namespace) -> int:
    """`resume --past-limit`: the owner takes runs past the daily limit until the day turns."""
    report = _ask(args, "resume_past_limit")
    if isinstance(report, ExitCode):
        return report
    today = report.get("today") or {}
    cost = usd(float(today.get("cost_usd") or 0)) + (
        " (partial: some CLIs report no cost)" if today.get("cost_partial") else ""
    )
    print(
        "going on past the daily limit until the day turns (00:00 local time); polling now. "
        f"Today so far: {plural(int(today.get('runs') or 0), 'run')}, {cost}, "
        f"{plural(int(today.get('tokens') or 0), 'token')}"
    )
    return ExitCode.OK


def _switch(args: argparse.Namespace, op: str, done: str) -> int:
    answer = _ask(args, op)
    if isinstance(answer, ExitCode):
        return answer
    print(done)
    return ExitCode.OK


def _ask(args: argparse.Namespace, op: str) -> dict[str, Any] | ExitCode:
    """The running agent's answer to `op`, or the exit code of a failure already said:
    no agent running is a configuration matter (2), a broken answer an internal one (1)."""
    try:
        return ask_daemon(settings_from(args), op)
    except DaemonNotRunning as exc:
        fail(str(exc))
        return ExitCode.CONFIG
    except ControlError as exc:
        fail(str(exc))
        return ExitCode.INTERNAL
