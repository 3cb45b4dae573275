"""This device's worker_id: chosen once, then kept, so roaming never turns it into a new device.

A laptop's host name changes with the network it joins (macOS appends -2,
DHCP hands out names); deriving the id from it on every start would make the
server see a new device and strand the watchers pinned to the old one.
"""

from __future__ import annotations

import re
import socket
import uuid

from device_agent.config import ConfigError, Settings
from device_agent.server.protocol import WORKER_ID_PATTERN


def resolve_worker_id(settings: Settings) -> str:
    if settings.worker_id:
        return settings.worker_id
    path = settings.paths.state_dir / "worker_id"
    try:
        kept = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        kept = ""
    if kept:
        if not WORKER_ID_PATTERN.fullmatch(kept):
            raise ConfigError(f"{path} holds an invalid worker_id {kept!r}: fix or delete the file")
        return kept
    new = generate_worker_id(settings.platform)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(new + "\n", encoding="utf-8")
    return new


def generate_worker_id(platform: str) -> str:
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname().split(".")[0])[:40] or "device"
    return f"{platform}:{host}-{uuid.uuid4().hex[:8]}"
