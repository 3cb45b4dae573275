"""`device-agent trigger`: "Run now" — queue a run and ask the running agent to poll."""

from __future__ import annotations

import argparse
import os
import signal
from typing import TYPE_CHECKING

from device_agent.commands import settings_from

if TYPE_CHECKING:
    from device_agent.settings import Settings


def cmd_trigger(args: argparse.Namespace) -> int:
    from device_agent.auth.commands import run_now

    settings = settings_from(args)
    return run_now(settings, args, poke=lambda: poke_running_agent(settings))


def poke_running_agent(settings: Settings) -> str:
    """Ask a running agent to poll now; one line saying what happened, never a promise.

    The one place to swap in the control socket's poll-now (`commands/control.py`).
    """
    from device_agent.lock import holder_pid

    pid = holder_pid(settings.paths.lock_file)
    try:
        if pid is None:
            raise ProcessLookupError
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        return "no agent is running here; the run waits until one polls"
    except PermissionError:
        return f"the agent (PID {pid}) runs as another user; it polls at its next interval"
    return "asked the running agent to poll now"
