"""`device-agent service install | uninstall | start | stop | status`.

macOS: a LaunchAgent (`launchd.py`). Linux: a systemd *user* unit of
`Type=notify` (`systemd.py`). Both are rendered from the templates in
`config/` (`templates.py`) from one `ServiceSpec` (`spec.py`).

Every change is first a plan — files to write or remove, commands to run
(`steps.py`) — so `--dry-run` prints exactly what a real run would do. This
module picks the service manager and is the command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Final, Protocol

from device_agent.config import Settings
from device_agent.desktop.service.launchd import Launchd
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
    return parser


def main(
    args: argparse.Namespace,
    settings: Settings,
    *,
    runner: Runner = run_command,
    spec: ServiceSpec | None = None,
    platform: str = sys.platform,
) -> int:
    """Run `device-agent service ACTION`; exit 0, or 2 with one line saying what to do."""
    try:
        manager = manager_for(spec or ServiceSpec.from_settings(settings), runner, platform)
        if args.action == "status":
            print(f"device-agent service ({manager.name}): {manager.status()}")
            return 0
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
    except ServiceError as exc:
        print(f"device-agent: {exc}", file=sys.stderr)
        return 2
    print(_done(args.action, manager, steps))
    return 0


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
