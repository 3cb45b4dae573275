"""`device-agent doctor`: check everything a run depends on and say what to fix."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import keyring

from device_agent.client import AnswerKind, LobuClient
from device_agent.credentials import CredentialError, resolve_token
from device_agent.dispatcher import ExitCode
from device_agent.profiles import ProfileCheck, check_profiles, load_profiles
from device_agent.settings import ConfigError, Settings


@dataclass(frozen=True)
class Check:
    ok: bool
    what: str
    detail: str = ""

    def line(self) -> str:
        mark = "ok " if self.ok else "FAIL"
        return f"[{mark}] {self.what}" + (f": {self.detail}" if self.detail else "")


def run_doctor(settings: Settings) -> int:
    checks, code = asyncio.run(_checks(settings))
    for check in checks:
        print(check.line())
    failed = sum(not c.ok for c in checks)
    print(f"\n{len(checks) - failed} passed, {failed} failed")
    return code


async def _checks(settings: Settings) -> tuple[list[Check], int]:
    checks = [_dirs(settings), _keyring()]
    code: int = ExitCode.OK
    server_checks, server_code = await _server(settings)
    checks += server_checks
    code = server_code
    profiles = load_profiles(user_dir=settings.paths.profiles_dir)
    for result in await check_profiles(profiles):
        checks.append(Check(result.path is not None, f"executor {result.name}", _describe(result)))
    default = settings.default_agent
    checks.append(
        Check(
            default in profiles,
            f"default agent {default!r} has a profile",
            "" if default in profiles else f"known: {', '.join(sorted(profiles))}",
        )
    )
    if code == ExitCode.OK and not all(c.ok for c in checks):
        code = ExitCode.INTERNAL
    return checks, code


def _dirs(settings: Settings) -> Check:
    paths = settings.paths
    try:
        paths.ensure()
    except OSError as exc:
        return Check(False, "directories", f"{exc}")
    unwritable = [str(d) for d in (paths.state_dir, paths.log_dir) if not os.access(d, os.W_OK)]
    if unwritable:
        return Check(False, "directories", f"not writable: {', '.join(unwritable)}")
    return Check(True, "directories", f"state {paths.state_dir}, logs {paths.log_dir}")


def _keyring() -> Check:
    backend = keyring.get_keyring()
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    usable = "fail" not in name and "null" not in name
    hint = "" if usable else " (none usable: set DEVICE_AGENT_TOKEN instead)"
    return Check(usable, "OS keyring", name + hint)


async def _server(settings: Settings) -> tuple[list[Check], int]:
    try:
        origin = settings.origin
    except ConfigError as exc:
        return [Check(False, "server", str(exc))], ExitCode.CONFIG
    try:
        token = resolve_token(settings)
    except CredentialError as exc:
        return [Check(True, "server", origin), Check(False, "token", str(exc))], ExitCode.AUTH
    async with LobuClient(origin, lambda: token, request_timeout=10.0) as client:
        answer = await client.devices()
    if answer.kind is AnswerKind.TRANSIENT and answer.status is None:
        return [
            Check(False, "server reachable", f"{origin}: {answer.message}")
        ], ExitCode.UNREACHABLE
    reach = Check(True, "server reachable", origin)
    if answer.kind is AnswerKind.AUTH:
        return [reach, Check(False, "token accepted", answer.describe())], ExitCode.AUTH
    if not answer.ok:
        return [reach, Check(False, "token accepted", answer.describe())], ExitCode.INTERNAL
    return [reach, Check(True, "token accepted")], ExitCode.OK


def _describe(check: ProfileCheck) -> str:
    if check.path is None:
        return check.error or f"{check.binary} not found on PATH"
    unknown = f"version unknown: {check.error}" if check.error else "version unknown"
    return f"{check.path} ({check.version or unknown})"
