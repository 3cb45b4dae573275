"""The agent's last known state, kept in a small JSON file for `device-agent status`."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from device_agent.status import Status


def write_status(path: Path, status: Status, **extra: Any) -> None:
    """Atomically replace the status file (a reader never sees half a file)."""
    data = {**asdict(status), **extra, "pid": os.getpid(), "updated_at": time.time()}
    data["running"] = {str(k): v for k, v in status.running.items()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None
