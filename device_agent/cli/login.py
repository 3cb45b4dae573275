"""`device-agent login` and `logout`: see `device_agent.identity.commands`."""

from __future__ import annotations

import argparse

from device_agent.cli.common import settings_from


def cmd_login(args: argparse.Namespace) -> int:
    from device_agent.identity.commands import login

    return login(settings_from(args), args)


def cmd_logout(args: argparse.Namespace) -> int:
    from device_agent.identity.commands import logout

    return logout(settings_from(args), args)
