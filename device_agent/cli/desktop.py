"""`device-agent service` and `device-agent tray` (device_agent/desktop/service, tray.py)."""

from __future__ import annotations

import argparse

from device_agent.cli.common import settings_from


def cmd_service(args: argparse.Namespace) -> int:
    from device_agent.desktop import service

    return service.main(args, settings_from(args))


def cmd_tray(args: argparse.Namespace) -> int:
    from device_agent.desktop import tray

    return tray.main(args, settings_from(args))
