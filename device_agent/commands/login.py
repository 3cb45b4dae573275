"""`device-agent login` and `logout`: the token in the OS keyring."""

from __future__ import annotations

import argparse
import asyncio
import sys

from device_agent.commands import fail, settings_from
from device_agent.errors import ExitCode


def cmd_login(args: argparse.Namespace) -> int:
    from device_agent.credentials import store_token

    settings = settings_from(args)
    server = settings.origin
    if args.token_stdin or not sys.stdin.isatty():
        token = sys.stdin.readline().strip()
    else:
        import getpass

        token = getpass.getpass(f"Paste the device token for {server}: ").strip()
    code = asyncio.run(_check_token(server, token))
    if code != ExitCode.OK:
        return code
    store_token(server, token)
    print(f"Token for {server} stored in the OS keyring.")
    return ExitCode.OK


async def _check_token(server: str, token: str) -> int:
    from device_agent.client import AnswerKind, LobuClient

    async with LobuClient(server, lambda: token) as client:
        answer = await client.devices()
    if answer.kind is AnswerKind.AUTH:
        fail(f"the server refused that token ({answer.describe()}); nothing was stored")
        return ExitCode.AUTH
    if answer.kind is AnswerKind.TRANSIENT and not answer.reached:
        fail(f"cannot reach {server} to check the token ({answer.message}); nothing was stored")
        return ExitCode.UNREACHABLE
    return ExitCode.OK


def cmd_logout(args: argparse.Namespace) -> int:
    from device_agent.credentials import delete_token

    settings = settings_from(args)
    if delete_token(settings.origin):
        print(f"Token for {settings.origin} removed from the OS keyring.")
    else:
        print(f"No token stored for {settings.origin}.")
    return ExitCode.OK
