"""What every command does first: its settings from the arguments, and its logs."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from device_agent import logs
from device_agent.config import Settings, load


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {
        "server": getattr(args, "server", None),
        "worker_id": getattr(args, "worker_id", None),
        **extra,
    }
    return load(config_path=getattr(args, "config", None), overrides=overrides)


def setup_logs(settings: Settings, args: argparse.Namespace, *secrets: str | None) -> None:
    settings.paths.ensure()
    level = logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
    logs.setup(log_file=settings.paths.log_file, console_level=level, secrets=secrets)
