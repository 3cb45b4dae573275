"""`device-agent run`: poll and run the runs pinned to this device (what the service runs)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Mapping

from device_agent import logs
from device_agent.agent.app import run_agent
from device_agent.agent.lock import InstanceLock
from device_agent.cli.common import settings_from
from device_agent.cli.output import fail
from device_agent.config import ConfigError, Settings
from device_agent.desktop.sdnotify import SystemdNotifier
from device_agent.desktop.service import supervised_exit_code
from device_agent.errors import DeviceAgentError
from device_agent.executors.environment import child_environment
from device_agent.executors.process import wait_for_children_with_pidfd
from device_agent.executors.profiles import (
    Profile,
    default_agent_problem,
    found_executors,
    load_profiles,
)
from device_agent.identity.credentials import resolve_token
from device_agent.identity.worker_id import resolve_worker_id
from device_agent.logs import get_logger


def cmd_run(args: argparse.Namespace) -> int:
    # First: NOTIFY_SOCKET and WATCHDOG_* leave the environment before any CLI could inherit them.
    systemd = SystemdNotifier.from_environ()
    try:
        code = _run(args, systemd)
    except DeviceAgentError as exc:  # said here, so a service manager sees the mapped code
        fail(exc.user_message())
        code = exc.exit_code
    return supervised_exit_code(int(code))


def _run(args: argparse.Namespace, systemd: SystemdNotifier) -> int:
    settings = settings_from(args, concurrency=args.concurrency, default_agent=args.default_agent)
    settings.paths.ensure()  # first: a state dir others can write is the graver problem
    profiles = load_profiles(user_dir=settings.paths.profiles_dir)  # read once, checked here
    executors = check_executors(settings, profiles)
    token = resolve_token(settings)
    _setup_logs(settings, args, token)
    worker_id = resolve_worker_id(settings)
    # `trigger` may poke us with SIGUSR1 as soon as we hold the lock; until the loop handles
    # it (and after), its default action would kill the agent.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    with InstanceLock(settings.paths.lock_file):
        get_logger(__name__).info(executors)
        wait_for_children_with_pidfd()
        return int(
            asyncio.run(
                run_agent(
                    settings,
                    token=token,
                    worker_id=worker_id,
                    once=args.once,
                    systemd=systemd,
                    profiles=profiles,
                )
            )
        )


def _setup_logs(settings: Settings, args: argparse.Namespace, *secrets: str | None) -> None:
    """The agent's log file, and its terminal at INFO (DEBUG with `--verbose`)."""
    settings.paths.ensure()
    level = logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
    logs.setup(log_file=settings.paths.log_file, console_level=level, secrets=secrets)


def check_executors(settings: Settings, profiles: Mapping[str, Profile]) -> str:
    """Refuse to start, in one line, when runs that name no executor could not run here;
    else the one line that says which executors this device has.

    A watcher run names no executor (docs/protocol.md, "execution_config and the CLI"), so
    every one would fail on the server with "binary not found"; better to say so now, the
    way `doctor` does.
    """
    path = child_environment(None, settings.executor, secrets=())["PATH"]
    problem = default_agent_problem(profiles, settings.default_agent, path)
    if problem is not None:
        raise ConfigError(problem)
    found = [name for name, where in found_executors(profiles, path).items() if where]
    others = ", ".join(name for name in found if name != settings.default_agent) or "none"
    return f"executors: {settings.default_agent} (default); runs may also name: {others}"
