"""`device-agent service install | uninstall | start | stop | status`.

macOS: a LaunchAgent (`launchd.py`). Linux: a systemd *user* unit of
`Type=notify` (`systemd.py`). Both are rendered from the templates in
`config/` (`templates.py`) from one `ServiceSpec` (`spec.py`).

Every change is first a plan — files to write or remove, commands to run
(`steps.py`) — so `--dry-run` prints exactly what a real run would do. Before
an install, the CLI's preflight (doctor's checks, as the service will see them)
must find nothing that would keep the agent from starting, unless `--force`;
after it, the agent must reach READY within a bounded wait (`ready.py`). This
module picks the service manager and is the command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from device_agent.config import Settings
from device_agent.desktop.service.launchd import Launchd
from device_agent.desktop.service.ready import (
    LOG_LINES,
    Preflight,
    Readiness,
    ReadyWait,
    wait_until_ready,
)
from device_agent.desktop.service.spec import (
    ENV_SUPERVISOR,
    LABEL,
    PASSED_ON,
    STOP_MARGIN_SECONDS,
    TRAY_LABEL,
    UNIT,
    WATCHDOG_SECONDS,
    ServiceError,
    ServiceSpec,
    has_keyring,
    service_path,
    supervised_exit_code,
    this_program,
)
from device_agent.desktop.service.steps import (
    Command,
    RemoveFile,
    Runner,
    Step,
    WriteFile,
    apply,
    call,
    describe,
    run_command,
    unchanged,
    write_atomically,
)
from device_agent.desktop.service.systemd import Systemd
from device_agent.desktop.service.templates import (
    desktop_exec,
    fill_plist,
    render_text,
    systemd_path,
    systemd_quote,
    template,
)

__all__ = [
    "ACTIONS",
    "ENV_SUPERVISOR",
    "LABEL",
    "PASSED_ON",
    "STOP_MARGIN_SECONDS",
    "TRAY_LABEL",
    "UNIT",
    "WATCHDOG_SECONDS",
    "Command",
    "Launchd",
    "Preflight",
    "Readiness",
    "ReadyWait",
    "RemoveFile",
    "Runner",
    "ServiceError",
    "ServiceManager",
    "ServiceSpec",
    "Step",
    "Systemd",
    "WriteFile",
    "add_arguments",
    "apply",
    "call",
    "describe",
    "desktop_exec",
    "fill_plist",
    "has_keyring",
    "main",
    "manager_for",
    "render_text",
    "run_command",
    "service_path",
    "supervised_exit_code",
    "systemd_path",
    "systemd_quote",
    "template",
    "this_program",
    "unchanged",
    "wait_until_ready",
    "write_atomically",
]


class ServiceManager(Protocol):
    name: str
    hint: str

    def install(self, *, with_tray: bool) -> list[Step]: ...

    def uninstall(self) -> list[Step]: ...

    def start(self) -> list[Step]: ...

    def stop(self) -> list[Step]: ...

    def status(self) -> str: ...

    def notes(self) -> list[str]: ...

    def readiness(self) -> Readiness: ...

    def recent_logs(self, lines: int) -> list[str]: ...


def manager_for(spec: ServiceSpec, runner: Runner, platform: str = sys.platform) -> ServiceManager:
    if platform == "darwin":
        return Launchd(spec, runner)
    if platform.startswith("linux"):
        return Systemd(spec, runner)
    raise ServiceError(
        f"`service` supports macOS (launchd) and Linux (systemd), not {platform}: "
        "run `device-agent run` under your own supervisor"
    )


# ------------------------------------------------------------------ command line

ACTIONS: Final = ("install", "uninstall", "start", "stop", "status")


def add_arguments(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser] = (),
) -> argparse.ArgumentParser:
    """Add `service ACTION [--dry-run] [--with-tray]`; the caller then calls `main`."""
    parser = subparsers.add_parser(
        "service",
        parents=list(parents),
        help="run the agent as a launchd/systemd user service",
        description="Install, remove, start, stop or inspect the agent's user service.",
    )
    parser.add_argument(
        "action", choices=ACTIONS, help="install, uninstall, start, stop or show the service"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be written and run; change nothing"
    )
    parser.add_argument(
        "--with-tray", action="store_true", help="install: also start the tray menu at login"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="install even though doctor's checks say the agent could not start",
    )
    return parser


def main(
    args: argparse.Namespace,
    settings: Settings,
    *,
    runner: Runner = run_command,
    spec: ServiceSpec | None = None,
    platform: str = sys.platform,
    preflight: Callable[[ServiceSpec], Preflight] | None = None,
    wait: ReadyWait | None = None,
) -> int:
    """Run `device-agent service ACTION`; exit 0, or 2 with what to do.

    `preflight` (the CLI passes doctor's checks) runs before an install, dry or not: what
    would keep the agent from starting refuses the install unless `args.force`. `wait`:
    after a real install, wait that long for the agent to reach READY and say whether it
    did. Without them (None), neither is done.
    """
    try:
        spec = spec or ServiceSpec.from_settings(settings)
        manager = manager_for(spec, runner, platform)
        if args.action == "status":
            print(f"device-agent service ({manager.name}): {manager.status()}")
            return 0
        force = getattr(args, "force", False)
        if args.action == "install" and preflight and not _cleared(preflight(spec), force=force):
            return 2
        steps = {
            "install": lambda: manager.install(with_tray=args.with_tray),
            "uninstall": manager.uninstall,
            "start": manager.start,
            "stop": manager.stop,
        }[args.action]()
        if args.dry_run:
            for step in steps:
                print(describe(step))
            return 0
        if args.action == "install":
            settings.paths.ensure()  # launchd does not create the folder its logs go to
        apply(steps, runner, hint=manager.hint)
        readiness = None
        if args.action in ("install", "start") and steps and wait is not None:
            readiness = wait_until_ready(manager, wait)
    except ServiceError as exc:
        print(f"device-agent: {exc}", file=sys.stderr)
        return 2
    print(_done(args.action, manager, steps))
    if readiness is None:
        return 0
    return _said_ready(manager, readiness, wait)


def _cleared(found: Preflight, *, force: bool) -> bool:
    """Say what doctor found; False: the install must not go on."""
    if found.blocking and not force:
        print(
            "device-agent: not installing the service: the agent could not start there.",
            file=sys.stderr,
        )
        for line in [*found.blocking, *found.warnings]:
            print(f"  {line}", file=sys.stderr)
        if found.hint:
            print(found.hint, file=sys.stderr)
        print(
            "Fix what the [FAIL] lines say (`device-agent doctor` checks again), "
            "or install it anyway with --force.",
            file=sys.stderr,
        )
        return False
    if found.blocking or found.warnings:
        said = "installing anyway (--force)" if found.blocking else "installing"
        print(f"device-agent service: {said}, but doctor found:")
        for line in [*found.blocking, *found.warnings]:
            print(f"  {line}")
        if found.hint:
            print(found.hint)
    return True


def _said_ready(manager: ServiceManager, readiness: Readiness, wait: ReadyWait | None) -> int:
    """Say whether the agent reached READY; 2 when it will not without a fix."""
    if readiness.ready:
        print(f"device-agent service: the agent is ready ({readiness.detail})")
        return 0
    if readiness.ready is None:
        waited = f" within {wait.timeout:g} s" if wait is not None else ""
        print(
            f"device-agent service: the agent is still starting{waited} ({readiness.detail}); "
            "`device-agent service status` shows how it goes"
        )
        return 0
    print(
        f"device-agent: the service was installed but the agent did not start "
        f"({readiness.detail}). Its last log lines:",
        file=sys.stderr,
    )
    for line in manager.recent_logs(LOG_LINES):
        print(f"  | {line}", file=sys.stderr)
    print(
        "Fix what they say (`device-agent doctor` helps), then `device-agent service start`.",
        file=sys.stderr,
    )
    return 2


def _done(action: str, manager: ServiceManager, steps: Sequence[Step]) -> str:
    if action == "install" and not steps:
        return "device-agent service: already installed and running; nothing changed"
    if action == "install":
        return "\n".join(["device-agent service: installed and started", *manager.notes()])
    return {
        "uninstall": "device-agent service: removed",
        "start": "device-agent service: started",
        "stop": "device-agent service: stopped",
    }[action]
