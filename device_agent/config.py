"""Typed settings: defaults < config file < environment < command-line flags.

Every mistake a user can make here ends in one `ConfigError` line that names
the key, what is wrong with it, and what to do — the CLI turns it into exit 2.
"""

from __future__ import annotations

import ipaddress
import os
import platform as _platform
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from device_agent.desktop.notify import NotificationConfigError, NotificationSettings
from device_agent.errors import ConfigError as ConfigError  # raised here; importable from here
from device_agent.executors.execconfig import PERMISSION_MODES, SAFE_PERMISSION_MODES
from device_agent.paths import APP_NAME as APP_NAME
from device_agent.paths import ENV_HOME as ENV_HOME
from device_agent.paths import Paths as Paths
from device_agent.paths import ensure_private_dir as ensure_private_dir
from device_agent.server.protocol import WORKER_ID_PATTERN

ENV_SERVER: Final = "DEVICE_AGENT_SERVER"
ENV_TOKEN: Final = "DEVICE_AGENT_TOKEN"  # noqa: S105 - a variable name, not a secret
ENV_WORKER_ID: Final = "DEVICE_AGENT_WORKER_ID"
ENV_CONFIG: Final = "DEVICE_AGENT_CONFIG"
MAX_WAIT_SECONDS: Final = 25  # current servers hold a poll at most this long and do not clamp


@dataclass(frozen=True)
class ExecutorSettings:
    workdir: Path | None = None  # None: a fresh temp dir per run, removed afterwards
    keep_workdir: bool = False
    kill_grace_seconds: float = 3.0
    stdout_cap_bytes: int = 4 * 1024 * 1024
    stderr_cap_bytes: int = 1024 * 1024
    env_allow: tuple[str, ...] = ()  # empty: pass the user's whole environment
    env_deny: tuple[str, ...] = ()
    mcp: bool = True
    # The permission modes a run may ask for; the owner's consent for anything wider.
    allowed_permission_modes: tuple[str, ...] = SAFE_PERMISSION_MODES


@dataclass(frozen=True)
class JournalSettings:
    keep_days: float = 30.0
    keep_rows: int = 1000
    keep_output_bytes: int = 32 * 1024  # of a settled run's output: its head and tail


@dataclass(frozen=True)
class Settings:
    server: str | None = None
    token: str | None = field(default=None, repr=False)
    worker_id: str | None = None  # None: generated once and kept in the state dir
    label: str = field(default_factory=lambda: socket.gethostname().split(".")[0] or "device")
    platform: str = field(default_factory=lambda: default_platform())
    concurrency: int = 1
    default_agent: str = "claude-code"
    heartbeat_seconds: float = 30.0
    # Past a booting server's held polls, which still claim (docs/protocol.md, "Long-poll").
    poll_timeout_seconds: float = 90.0
    # How long a current server may hold an idle poll (docs/protocol.md, "Long-poll").
    wait_seconds: int = 25
    request_timeout_seconds: float = 15.0
    max_backoff_seconds: float = 60.0
    shutdown_grace_seconds: float = 20.0
    server_error_budget: int = 8  # the same 500 this many times on a report: give up
    client_name: str = "device-agent"  # how login, local-init and the mint name this client
    account_timeout_seconds: float = 15.0  # login, logout, Run now and rotation requests
    rotate_days_left: float = 30.0  # re-mint the device token with fewer days than this left
    # (docs/protocol.md, "What a real server does")
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    journal: JournalSettings = field(default_factory=JournalSettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    paths: Paths = field(default_factory=lambda: Paths.resolve(os.environ))

    @property
    def origin(self) -> str:
        if not self.server:
            raise ConfigError(
                "no server configured: set `server` in the config file, "
                f"{ENV_SERVER}, or pass --server URL"
            )
        return self.server

    def __repr__(self) -> str:  # the token must never reach a log line
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name != "token"
        )
        return f"Settings({shown}, token={'<set>' if self.token else None})"


def default_platform() -> str:
    """`macos` on a Mac, `headless` elsewhere: current servers hand a `linux` device no
    automation runs (docs/protocol.md, "Automation lane")."""
    return "macos" if _platform.system() == "Darwin" else "headless"


# ------------------------------------------------------------------ loading


def load(
    *,
    env: Mapping[str, str] | None = None,
    config_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build settings from the config file, the environment and flags (in that order)."""
    env = os.environ if env is None else env
    paths = Paths.resolve(env)
    file_path, named_by = config_file_in_use(paths, config_path, env)
    values = _read_config_file(file_path, named_by=named_by)
    if "token" in values:
        raise ConfigError(
            f"config file {file_path} contains a token: remove it and run `device-agent login` "
            f"(the OS keyring keeps it) or set {ENV_TOKEN}"
        )
    if "platform" in values:
        raise ConfigError(
            f"config file {file_path} sets platform: remove it; the agent detects the platform "
            "and the server accepts only the ones it knows"
        )
    values.update(_from_env(env))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return validate(_build(values, paths))


def config_file_in_use(
    paths: Paths, config_path: Path | None, env: Mapping[str, str] | None = None
) -> tuple[Path, str | None]:
    """The config file and what named it (--config, DEVICE_AGENT_CONFIG, or None: the default)."""
    env = os.environ if env is None else env
    if config_path is not None:
        return config_path, "--config"
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG]).expanduser(), ENV_CONFIG
    return paths.config_file, None


def _read_config_file(path: Path, *, named_by: str | None) -> dict[str, Any]:
    """The file's settings; `named_by` is the flag or variable that chose this file (then it
    must exist), None for the default file (which may be absent)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if named_by is not None:
            raise ConfigError(
                f"config file {path} (named by {named_by}) does not exist: create it, "
                f"or drop {named_by}" + (" from the environment" if named_by == ENV_CONFIG else "")
            ) from None
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        return dict(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, name in (("server", ENV_SERVER), ("token", ENV_TOKEN), ("worker_id", ENV_WORKER_ID)):
        if env.get(name):
            values[key] = env[name].strip()
    return values


_SECTIONS: Final[Mapping[str, type]] = {"executor": ExecutorSettings, "journal": JournalSettings}
_TOP_LEVEL: Final = frozenset(
    f.name for f in fields(Settings) if f.name not in ("paths", "notifications", *_SECTIONS)
)
# What a config file may set: never the token (the keyring or DEVICE_AGENT_TOKEN keeps it)
# nor the platform (detected; the server refuses what it does not know).
_CONFIG_KEYS: Final = _TOP_LEVEL - {"token", "platform"}


def _build(values: Mapping[str, Any], paths: Paths) -> Settings:
    top: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for key, value in values.items():
        if key in _SECTIONS:
            sections[key] = _build_section(key, value)
        elif key == "notifications":
            sections[key] = _notifications(value)
        elif key in _TOP_LEVEL:
            top[key] = _coerce(key, value, _field_type(Settings, key))
        else:
            raise ConfigError(_unknown_key(key, _CONFIG_KEYS | {*_SECTIONS, "notifications"}))
    return Settings(paths=paths, **top, **sections)


def _build_section(name: str, value: Any) -> Any:
    cls = _SECTIONS[name]
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{name}] must be a table of settings, got {type(value).__name__}")
    known = {f.name for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, item in value.items():
        if key not in known:
            raise ConfigError(_unknown_key(f"{name}.{key}", {f"{name}.{k}" for k in known}))
        kwargs[key] = _coerce(f"{name}.{key}", item, _field_type(cls, key))
    return cls(**kwargs)


def _notifications(value: Any) -> NotificationSettings:
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"[notifications] must be a table of settings, got {type(value).__name__}"
        )
    try:
        return NotificationSettings.from_mapping(value)
    except NotificationConfigError as exc:
        raise ConfigError(str(exc)) from None


def _field_type(cls: type, name: str) -> str:
    for f in fields(cls):
        if f.name == name:
            return str(f.type)
    raise KeyError(name)


def _coerce(key: str, value: Any, type_name: str) -> Any:
    """Turn a TOML/env/flag value into the field's type, or say why it can't be."""
    if value is None:
        return None
    if type_name.startswith("bool"):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if type_name.startswith("int"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
        raise ConfigError(f"{key} must be a whole number, got {value!r}")
    if type_name.startswith("float"):
        if isinstance(value, bool):  # float(True) is 1.0: `keep_days = true` is a mistake
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if isinstance(value, int | float):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number of seconds, got {value!r}") from None
    if type_name.startswith("tuple"):
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"{key} must be a list of strings, got {value!r}")
    if type_name.startswith("Path"):
        if isinstance(value, str | Path) and str(value):
            return Path(value).expanduser()
        raise ConfigError(f"{key} must be a path, got {value!r}")
    if isinstance(value, str):
        return value
    raise ConfigError(f"{key} must be a string, got {value!r}")


def _unknown_key(key: str, known: set[str] | frozenset[str]) -> str:
    return f"unknown setting {key!r}: remove it or use one of {', '.join(sorted(known))}"


# --------------------------------------------------------------- validation


def validate(settings: Settings) -> Settings:
    if settings.server is not None:
        settings = replace(settings, server=validate_server_url(settings.server))
    if settings.worker_id is not None and not WORKER_ID_PATTERN.fullmatch(settings.worker_id):
        raise ConfigError(
            f"worker_id {settings.worker_id!r} is not valid: use 1-128 characters "
            "from letters, digits and . _ : -"
        )
    if settings.concurrency < 1 or settings.concurrency > 64:
        raise ConfigError(f"concurrency must be between 1 and 64, got {settings.concurrency}")
    _positive(
        settings,
        "heartbeat_seconds",
        "poll_timeout_seconds",
        "request_timeout_seconds",
        "max_backoff_seconds",
        "account_timeout_seconds",
    )
    if not 0 <= settings.wait_seconds <= MAX_WAIT_SECONDS:
        raise ConfigError(
            f"wait_seconds must be between 0 and {MAX_WAIT_SECONDS}, got {settings.wait_seconds}"
        )
    # A child token lives 90 days: a threshold at or above that would re-mint at every check.
    if not 1 <= settings.rotate_days_left < 90:
        raise ConfigError(
            f"rotate_days_left must be at least 1 and below 90, got {settings.rotate_days_left}"
        )
    if not settings.client_name.strip():
        raise ConfigError("client_name must not be empty: leave it out to use 'device-agent'")
    if settings.shutdown_grace_seconds < 0:
        raise ConfigError("shutdown_grace_seconds must not be negative")
    if settings.server_error_budget < 1:
        raise ConfigError("server_error_budget must be at least 1")
    ex = settings.executor
    if ex.kill_grace_seconds < 0:
        raise ConfigError("executor.kill_grace_seconds must not be negative")
    if ex.stdout_cap_bytes < 1024 or ex.stderr_cap_bytes < 1024:
        raise ConfigError("executor.stdout_cap_bytes and stderr_cap_bytes must be at least 1024")
    unknown = [m for m in ex.allowed_permission_modes if m not in PERMISSION_MODES]
    if unknown:
        raise ConfigError(
            f"executor.allowed_permission_modes has unknown modes {', '.join(unknown)}: "
            f"use some of {', '.join(PERMISSION_MODES)}"
        )
    if settings.journal.keep_days < 0 or settings.journal.keep_rows < 0:
        raise ConfigError("journal.keep_days and journal.keep_rows must not be negative")
    if settings.journal.keep_output_bytes < 1024:
        raise ConfigError("journal.keep_output_bytes must be at least 1024")
    if not settings.default_agent:
        raise ConfigError("default_agent must name an executor profile, e.g. 'claude-code'")
    # Last, so that a mistake in the config file is reported first, by its own name.
    if settings.token is not None and not _TOKEN_SHAPE.fullmatch(settings.token):
        raise ConfigError(
            f"{ENV_TOKEN} does not hold a token (it is empty or has spaces or control "
            f"characters): set it to the token alone, or unset it and run `device-agent login`"
        )
    return settings


# No spaces or control characters (an HTTP header cannot carry them); a non-ASCII
# token is refused later, by credentials, with its own message.
_TOKEN_SHAPE: Final = re.compile(r"[^\s\x00-\x1f\x7f]{1,4096}")


def _positive(settings: Settings, *names: str) -> None:
    for name in names:
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{name} must be greater than 0, got {getattr(settings, name)}")


def validate_server_url(url: str) -> str:
    """Accept https anywhere, plain http only on loopback: a token must not cross a network."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"server {url!r} is not a URL: use e.g. https://lobu.example.com")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise ConfigError(
            f"server {url!r} has no valid port: use a number from 1 to 65535, "
            "e.g. http://localhost:8787"
        ) from None
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(
            f"server {url!r} uses plain http to a non-loopback host, which would send your token "
            "in clear: use https://"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
