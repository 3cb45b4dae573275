"""`device-agent doctor`: check everything a run depends on and say what to fix."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from device_agent.agent.journal import Journal, JournalError, disk_bytes
from device_agent.agent.limits import plural, usd
from device_agent.cli.common import settings_from
from device_agent.cli.status import describe_journal
from device_agent.config import ConfigError, Settings, config_file_in_use, ensure_private_dir
from device_agent.desktop.notify import notifier
from device_agent.desktop.service import service_path, this_program
from device_agent.errors import ExitCode
from device_agent.executors.probe import ProfileCheck, check_profiles
from device_agent.executors.profiles import default_agent_problem, load_profiles
from device_agent.identity.credentials import CredentialError, describe_token_home, resolve_token
from device_agent.identity.store import keyring_name, usable_keyring
from device_agent.lanes.registration import offered_agent_kinds
from device_agent.server.client import AnswerKind, LobuClient


@dataclass(frozen=True)
class Check:
    ok: bool | None  # None: worth knowing, not a problem
    what: str
    detail: str = ""
    warn: bool = False  # usable, but worth a look (counted by `ok` all the same)
    blocks_start: bool = False  # failed so that `run` (and so the service) could not start

    def line(self) -> str:
        mark = "WARN" if self.warn else {True: "ok  ", False: "FAIL", None: " -- "}[self.ok]
        return f"[{mark}] {self.what}" + (f": {self.detail}" if self.detail else "")


# Where version managers and per-shell installers put CLIs: a PATH that finds them today
# loses them when the Node version changes, and a service keeps the PATH of its install.
SHELL_ONLY_DIRS: Final = ("/.nvm/", "/.volta/", "/.claude/local/", "/.asdf/", "/.fnm/", "/mise/")


def run_doctor(settings: Settings, *, config_file: Path | None = None) -> int:
    if config_file is not None:
        shown = f"{config_file}" if config_file.exists() else f"{config_file} (not created yet)"
        print(f"[ -- ] config file: {shown}")
    print(f"[ -- ] executors dir: {settings.paths.profiles_dir} (your own profiles go here)")
    checks, code = asyncio.run(_checks(settings))
    for check in checks:
        print(check.line())
    failed = sum(c.ok is False for c in checks)
    passed = sum(c.ok is True for c in checks)
    print(f"\n{passed} passed, {failed} failed")
    return code


def startup_findings(settings: Settings) -> tuple[list[Check], list[Check]]:
    """Doctor's failed checks for `settings`, split in two: what would keep `run` from
    starting (no server, no token, the default agent's CLI missing, unusable directories),
    and what else failed (the agent starts, then retries or says what to do). Creates
    nothing: `service install --dry-run` runs it."""
    checks, _ = asyncio.run(_checks(settings, create_dirs=False))
    failed = [check for check in checks if check.ok is False]
    return [c for c in failed if c.blocks_start], [c for c in failed if not c.blocks_start]


async def _checks(settings: Settings, *, create_dirs: bool = True) -> tuple[list[Check], int]:
    checks = [
        _dirs(settings, create=create_dirs),
        _journal(settings),
        _keyring(settings),
        _notifier(settings),
        _limits(settings),
    ]
    server_checks, code = await _server(settings)
    checks += server_checks
    checks += await _executors(settings)
    if code == ExitCode.OK and any(c.ok is False for c in checks):
        code = ExitCode.INTERNAL
    return checks, code


async def _executors(settings: Settings) -> list[Check]:
    """The default agent must be runnable; other CLIs are listed for information.

    CLIs are looked up on the PATH a service gets (`service.service_path`, what
    `service install` writes into the unit), not only this shell's.
    """
    profiles = load_profiles(user_dir=settings.paths.profiles_dir)
    default = settings.default_agent
    environ = dict(os.environ)
    environ["PATH"] = service_path(
        environ.get("PATH", os.defpath),
        home=Path.home(),
        program=this_program(sys.argv[0], sys.executable),
    )
    checks = []
    problem = default_agent_problem(profiles, default, environ["PATH"])
    if default not in profiles and problem:
        checks.append(Check(False, f"default agent {default!r}", problem, blocks_start=True))
    for result in await check_profiles(profiles, settings=settings.executor, environ=environ):
        found = result.path is not None
        warn = result.drift is not None
        if result.name == default:
            detail = _describe(result)
            if not found:
                detail += (
                    ": install it, or set `default_agent` in the config file to an agent "
                    "found below"
                )
            what = f"default agent {default!r}"
            checks.append(Check(found, what, detail, warn, blocks_start=not found))
        else:
            ok = True if found else None
            checks.append(Check(ok, f"executor {result.name}", _describe(result), warn))
    kinds = offered_agent_kinds(profiles, environ["PATH"], default_agent=default)
    advertised = ", ".join(kinds) if kinds else "none: a current server hands this device nothing"
    checks.append(Check(None, "agent kinds offered to current servers", advertised))
    return checks


def _dirs(settings: Settings, *, create: bool = True) -> Check:
    """The agent's directories: made if need be (`create`), else only those that exist are
    checked (a missing one is made by the agent when it starts)."""
    paths = settings.paths
    folders = (paths.config_dir, paths.state_dir, paths.log_dir)
    try:
        for folder in folders:
            if create or folder.exists():
                ensure_private_dir(folder)
    except ConfigError as exc:  # missing, not ours, or writable by others: said how to fix
        return Check(False, "directories", str(exc), blocks_start=True)
    unwritable = [
        str(d) for d in (paths.state_dir, paths.log_dir) if d.exists() and not os.access(d, os.W_OK)
    ]
    if unwritable:
        detail = f"not writable: {', '.join(unwritable)}"
        return Check(False, "directories", detail, blocks_start=True)
    return Check(True, "directories", f"state {paths.state_dir}, logs {paths.log_dir}")


def _journal(settings: Settings) -> Check:
    """The journal's size and what retention keeps of it; a journal that cannot be opened
    fails (the agent could not start with it)."""
    path = settings.paths.journal_file
    about: dict[str, object] = {"path": str(path), "bytes": disk_bytes(path), "runs": 0}
    if path.exists():
        try:
            journal = Journal(path)
        except JournalError as exc:
            return Check(False, "journal", str(exc))
        try:
            about["runs"] = sum(journal.counts().values())
        finally:
            journal.close()
    keep = settings.journal
    kept = (
        f"keeps {keep.keep_rows} settled runs for up to {keep.keep_days:g} days, "
        f"{keep.keep_output_bytes} bytes of each one's output ([journal] in the config)"
    )
    return Check(None, "journal", f"{describe_journal(about)}; {kept}")


def _keyring(settings: Settings) -> Check:
    """Where the token lives. No keyring is a setup fact, not a failure: the 0600 file is used."""
    if settings.server is None:
        backend = usable_keyring()
        where = f"OS keyring ({keyring_name(backend)})" if backend else "0600 file in the state dir"
        return Check(True, "token home", f"{where} (no server configured yet)")
    return Check(True, "token home", describe_token_home(settings))


def _notifier(settings: Settings) -> Check:
    """A missing notifier is worth knowing, never a failure: runs go on without pop-ups."""
    found, what = notifier.check(settings.notifications)
    return Check(True if found else None, "notifications", what)


def _limits(settings: Settings) -> Check:
    """The owner's daily limits: worth knowing either way, never a failure."""
    limits = settings.limits
    if not limits.any:
        return Check(
            None,
            "daily limit",
            "off: a server may run as much as it likes here — set daily_usd, daily_tokens or "
            "daily_runs in [limits] in the config to cap what this device spends a day",
        )

    caps = []
    if limits.daily_usd is not None:
        caps.append(usd(limits.daily_usd))
    if limits.daily_tokens is not None:
        caps.append(plural(limits.daily_tokens, "token"))
    if limits.daily_runs is not None:
        caps.append(plural(limits.daily_runs, "run"))
    return Check(True, "daily limit", f"{', '.join(caps)} a day (the local calendar day)")


async def _server(settings: Settings) -> tuple[list[Check], int]:
    try:
        origin = settings.origin
    except ConfigError as exc:
        return [Check(False, "server", str(exc), blocks_start=True)], ExitCode.CONFIG
    try:
        token = resolve_token(settings)
    except CredentialError as exc:
        missing = Check(False, "token", str(exc), blocks_start=True)
        return [Check(True, "server", origin), missing], ExitCode.AUTH
    async with LobuClient(origin, lambda: token, request_timeout=10.0) as client:
        answer = await client.devices()
    if answer.kind is AnswerKind.TRANSIENT and not answer.reached:
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
        return check.error or f"{check.binary} not found on the service's PATH"
    where = f"found at {check.path}"
    if any(marker in check.path for marker in SHELL_ONLY_DIRS):
        where += (
            " — a version manager's dir: a service may lose it when versions change; "
            "set an absolute `binary` in the executors dir to pin it"
        )
    if not check.probed:
        return f"{where} (not run to ask its version: add version_args to its profile)"
    unknown = f"version unknown: {check.error}" if check.error else "version unknown"
    version = check.version or unknown
    if check.checked_version is not None:
        version += f"; profile checked against {check.checked_version}"
    if check.drift is not None:
        version += (
            f": this {check.drift} version may take other flags or print other output; "
            f"check its next run's result, or install {check.checked_version}"
        )
    return f"{where} ({version})"


def cmd_doctor(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    return run_doctor(settings, config_file=config_file_in_use(settings.paths, args.config)[0])
