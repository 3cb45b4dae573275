"""`device-agent service` and `device-agent tray`: see `device_agent.service` and `.tray`."""

from __future__ import annotations

import argparse

from device_agent.commands import settings_from


def cmd_service(args: argparse.Namespace) -> int:
    from device_agent import service

    return service.main(args, settings_from(args))


def cmd_tray(args: argparse.Namespace) -> int:
    from device_agent import tray

    return tray.main(args, settings_from(args))
