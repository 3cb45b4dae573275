"""Where the agent keeps its files: config, state and logs, each a private directory; and
where the data shipped beside the code is.

`DEVICE_AGENT_HOME` puts all three under one folder; otherwise they are the
platform's usual places (platformdirs). The shipped executor profiles and config
templates live in `device_agent/_data/` in a wheel, in the top-level `executors/`
and `config/` folders in a source checkout (`shipped_dir`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import platformdirs

from device_agent.errors import ConfigError

APP_NAME: Final = "device-agent"
ENV_HOME: Final = "DEVICE_AGENT_HOME"

_PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    state_dir: Path
    log_dir: Path

    @classmethod
    def resolve(cls, env: Mapping[str, str]) -> Paths:
        home = env.get(ENV_HOME)
        if home:
            root = Path(home).expanduser()
            return cls(root / "config", root / "state", root / "logs")
        return cls(
            Path(platformdirs.user_config_dir(APP_NAME)),
            Path(platformdirs.user_state_dir(APP_NAME)),
            Path(platformdirs.user_log_dir(APP_NAME)),
        )

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def journal_file(self) -> Path:
        return self.state_dir / "journal.sqlite3"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "device-agent.log"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "agent.lock"

    @property
    def profiles_dir(self) -> Path:
        """Where users drop their own executor profiles."""
        return self.config_dir / "executors"

    def ensure(self) -> None:
        for directory in (self.config_dir, self.state_dir, self.log_dir):
            ensure_private_dir(directory)


def ensure_private_dir(directory: Path) -> None:
    """Make `directory` (0700) or check that an existing one is ours alone: on a shared
    machine another user's or a group-writable dir could plant files and symlinks there."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = directory.stat()
    except OSError as exc:
        raise ConfigError(
            f"cannot use {directory} ({exc.strerror}): make it a directory you can write, "
            "or set DEVICE_AGENT_HOME to one"
        ) from None
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"{directory} belongs to another user (uid {info.st_uid}): use a directory of "
            "your own, e.g. set DEVICE_AGENT_HOME"
        )
    if info.st_mode & 0o022:
        raise ConfigError(
            f"{directory} can be written by group or others: run `chmod go-w {directory}`"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"{directory} is not writable: run `chmod u+rwx {directory}`")


def shipped_dir(name: str) -> Path:
    """`shipped_dir("executors")` or `shipped_dir("config")`."""
    installed = _PACKAGE / "_data" / name
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / name
