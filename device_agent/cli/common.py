"""What every command does first: its settings from the arguments.

Nothing here sets up logging: the commands that log (`run`, `demo`) set it up themselves,
so a short command such as `status` loads no logging stack.
"""

from __future__ import annotations

import argparse
from typing import Any

from device_agent.config import Settings, load


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {
        "server": getattr(args, "server", None),
        "worker_id": getattr(args, "worker_id", None),
        **extra,
    }
    return load(config_path=getattr(args, "config", None), overrides=overrides)
