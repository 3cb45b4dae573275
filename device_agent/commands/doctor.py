"""`device-agent doctor`: check server, token, CLIs and directories."""

from __future__ import annotations

import argparse

from device_agent.commands import settings_from


def cmd_doctor(args: argparse.Namespace) -> int:
    from device_agent.doctor import run_doctor

    return run_doctor(settings_from(args))
