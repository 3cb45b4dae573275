"""`device-agent doctor`: check server, token, CLIs and directories."""

from __future__ import annotations

import argparse

from device_agent.commands import settings_from


def cmd_doctor(args: argparse.Namespace) -> int:
    from device_agent.doctor import run_doctor
    from device_agent.settings import config_file_in_use

    settings = settings_from(args)
    return run_doctor(settings, config_file=config_file_in_use(settings.paths, args.config)[0])
