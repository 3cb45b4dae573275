"""The environment a CLI runs with: the user's own, minus our credentials, PATH extended."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Final

from device_agent.config import ENV_TOKEN, ExecutorSettings
from device_agent.redaction import worth_hiding

BASIC_ENV: Final = ("PATH", "HOME", "USER", "LANG", "TMPDIR")  # pass even an env_allow list
EXTRA_PATH: Final = (
    "~/.local/bin",
    "/opt/homebrew/bin",
    "/usr/local/bin",
    "~/.bun/bin",
    "~/.npm-global/bin",
)


def child_environment(
    environ: Mapping[str, str] | None,
    settings: ExecutorSettings,
    *,
    secrets: Iterable[str],
) -> dict[str, str]:
    """The user's environment minus our credentials, through env_allow/env_deny, PATH extended."""
    source = os.environ if environ is None else environ
    hidden = worth_hiding(secrets)
    env: dict[str, str] = {}
    for name, value in source.items():
        if name == ENV_TOKEN or any(secret in value for secret in hidden):
            continue
        if settings.env_allow and name not in BASIC_ENV and not _matches(name, settings.env_allow):
            continue
        if _matches(name, settings.env_deny):
            continue
        env[name] = value
    home = Path(env.get("HOME") or Path.home())
    env["PATH"] = extended_path(env.get("PATH") or os.defpath, home=home)
    return env


def extended_path(path: str, *, home: Path) -> str:
    """`path` plus the usual install dirs of CLI agents that exist here, without duplicates."""
    entries = [entry for entry in path.split(os.pathsep) if entry]
    for extra in EXTRA_PATH:
        directory = str(home / extra[2:]) if extra.startswith("~/") else extra
        if os.path.isdir(directory):
            entries.append(directory)
    return os.pathsep.join(dict.fromkeys(entries))


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)
