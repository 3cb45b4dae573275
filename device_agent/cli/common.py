"""One module per subcommand; each imports what it needs inside its function.

`cli` only parses arguments and handles errors, so `device-agent --version`
stays fast and a new command is a new file here.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from device_agent.config import Settings


def fail(message: str) -> None:
    print(f"device-agent: {message}", file=sys.stderr)


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    from device_agent.config import load

    overrides = {
        "server": getattr(args, "server", None),
        "worker_id": getattr(args, "worker_id", None),
        **extra,
    }
    return load(config_path=getattr(args, "config", None), overrides=overrides)


def setup_logs(settings: Settings, args: argparse.Namespace, *secrets: str | None) -> None:
    import logging  # here, not at the top: `--version` and `--help` would pay ~5 ms for it

    from device_agent import logs

    settings.paths.ensure()
    level = logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
    logs.setup(log_file=settings.paths.log_file, console_level=level, secrets=secrets)
