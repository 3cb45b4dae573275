"""`device-agent service` and `device-agent tray` (device_agent/desktop/service, tray.py)."""

from __future__ import annotations

import argparse
from dataclasses import replace

from device_agent.cli.common import settings_from
from device_agent.cli.doctor import Check, startup_findings
from device_agent.config import ConfigError, Settings, load
from device_agent.desktop import service, tray
from device_agent.desktop.service import Preflight, ServiceSpec


def cmd_service(args: argparse.Namespace) -> int:
    return _service(args, settings_from(args), flags=flags_given(args))


def install_service(settings: Settings, *, with_tray: bool, flags: list[str] | None = None) -> int:
    """`device-agent service install [--with-tray]`, for `setup`."""
    args = argparse.Namespace(action="install", dry_run=False, with_tray=with_tray, force=False)
    return _service(args, settings, flags=flags)


def _service(args: argparse.Namespace, settings: Settings, *, flags: list[str] | None) -> int:
    """Doctor's checks before an install, the wait for READY after it."""

    def preflight(spec: ServiceSpec) -> Preflight:
        return service_preflight(spec, flags=flags)

    return service.main(args, settings, preflight=preflight, wait=service.ReadyWait())


def service_preflight(spec: ServiceSpec, *, flags: list[str] | None = None) -> Preflight:
    """Doctor's checks with the settings the service will have: the config file and the
    DEVICE_AGENT_* variables the unit passes on (never this command's flags), and the token
    from the keyring or the unit's env file."""
    hint = None
    if flags:
        hint = (
            f"Note: {', '.join(flags)} reach this command only, not the service: it reads the "
            "config file (`device-agent login` saves the server there) and the DEVICE_AGENT_* "
            "variables set now."
        )
    try:
        settings = load(env=dict(spec.environment))
    except ConfigError as exc:
        return Preflight(blocking=[Check(False, "config", str(exc)).line()], hint=hint)
    if spec.env_file_token:  # no keyring: the unit's env file gives it DEVICE_AGENT_TOKEN
        settings = replace(settings, token=spec.env_file_token)
    blocking, warnings = startup_findings(settings)
    return Preflight(
        blocking=[check.line() for check in blocking],
        warnings=[check.line() for check in warnings],
        hint=hint if blocking or warnings else None,
    )


def flags_given(args: argparse.Namespace) -> list[str]:
    """The shared flags that change settings for this command only, as typed."""
    names = {"server": "--server", "config": "--config", "worker_id": "--worker-id"}
    return [flag for key, flag in names.items() if getattr(args, key, None)]


def cmd_tray(args: argparse.Namespace) -> int:
    return tray.main(args, settings_from(args))
