"""The agent as a user runs it: its environment, fake CLIs on its PATH, and what it leaves
behind (its journal) or says (its status over the control socket)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

FAKES = Path(__file__).parents[1] / "fakes"  # one fake of each CLI, shared by all tests


def agent_env(home: Path, *, server: str, token: str, worker_id: str) -> dict[str, str]:
    """The environment `device-agent` gets from a user: ours minus any DEVICE_AGENT_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICE_AGENT_")}
    env.update(
        DEVICE_AGENT_HOME=str(home),
        DEVICE_AGENT_SERVER=server,
        DEVICE_AGENT_TOKEN=token,
        DEVICE_AGENT_WORKER_ID=worker_id,
    )
    return env


def write_config(home: Path, text: str) -> None:
    """`text` as the agent's config.toml in `home`."""
    path = home / "config" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def install_fake(directory: Path, fake: str, name: str | None = None) -> Path:
    """Put fakes/<fake>.py in `directory` as an executable called `name`, run by this Python."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / (name or fake)
    source = (FAKES / f"{fake}.py").read_text(encoding="utf-8")
    target.write_text(f"#!{sys.executable}\n{source}", encoding="utf-8")
    target.chmod(0o755)
    shutil.copy(FAKES / "_report.py", directory / "_report.py")
    return target


def journal_rows(home: Path) -> dict[int, dict[str, Any]]:
    """The agent's journal, read straight from its SQLite file."""
    path = home / "state" / "journal.sqlite3"
    if not path.exists():
        return {}
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        rows = {row["run_id"]: dict(row) for row in db.execute("SELECT * FROM runs")}
        for run_id, output in db.execute("SELECT run_id, output FROM outputs"):
            rows[run_id]["output"] = output  # outputs are kept apart from their runs
        return rows
    finally:
        db.close()


def daemon_status(home: Path) -> dict[str, Any]:
    """What the running agent of `home` says over its control socket; {} when none answers."""
    from device_agent.desktop.control_client import ControlError, request, socket_path

    try:
        return request(socket_path(home / "state"), "status", timeout=5.0)
    except ControlError:  # DaemonNotRunning included: not up yet, or already gone
        return {}
