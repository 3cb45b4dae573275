"""The agent's last known state, kept in a small JSON file for `device-agent status`."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from device_agent.status import Status


def write_status(path: Path, status: Status, **extra: Any) -> None:
    """Atomically replace the status file (a reader never sees half a file)."""
    data = {**asdict(status), **extra, "pid": os.getpid(), "updated_at": time.time()}
    data["running"] = {str(k): v for k, v in status.running.items()}
    # A private temp file of our own (mkstemp: O_EXCL, 0600), never a fixed name a
    # symlink could be planted at.
    fd, tmp = tempfile.mkstemp(prefix=".status-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(json.dumps(data, indent=2))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None
