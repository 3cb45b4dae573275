"""Typed settings: defaults < config file < environment < command-line flags.

Each key is declared once, as a dataclass field: its type, default, range, unit
and meaning (device_agent/schema.py checks them; `config_reference` is the
README's table). Every mistake a user can make here ends in one `ConfigError`
line that names the key, where it was set, and what it must be — the CLI turns
it into exit 2.
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
from typing import Any, Final, NoReturn
from urllib.parse import urlsplit

from device_agent.desktop.notify.config import NotificationConfigError, NotificationSettings
from device_agent.errors import ConfigError as ConfigError  # raised here; importable from here
from device_agent.executors.execconfig import PERMISSION_MODES, SAFE_PERMISSION_MODES
from device_agent.paths import APP_NAME as APP_NAME
from device_agent.paths import ENV_HOME as ENV_HOME
from device_agent.paths import Paths as Paths
from device_agent.paths import ensure_private_dir as ensure_private_dir
from device_agent.schema import (
    Invalid,
    Spec,
    default_of,
    keys,
    read_table,
    setting,
    setting_from,
    unknown_key,
)
from device_agent.server.protocol import WORKER_ID_PATTERN

ENV_SERVER: Final = "DEVICE_AGENT_SERVER"
ENV_TOKEN: Final = "DEVICE_AGENT_TOKEN"  # noqa: S105 - a variable name, not a secret
ENV_WORKER_ID: Final = "DEVICE_AGENT_WORKER_ID"
ENV_CONFIG: Final = "DEVICE_AGENT_CONFIG"
MAX_WAIT_SECONDS: Final = 25  # current servers hold a poll at most this long and do not clamp


MIB: Final = 1024 * 1024
# Past the real server's warm-up: it held polls 13-42 s after a boot and still claimed a
# run into a poll whose client had gone (docs/protocol.md, "Poll and claim").
MIN_POLL_TIMEOUT_SECONDS: Final = 60


# Each key's type (the annotation), default, range, unit and meaning (`setting`) are declared
# here once: loading checks them, and the README's config reference is made from them.


@dataclass(frozen=True)
class ExecutorSettings:
    workdir: Path | None = setting(
        None, help="working directory of the CLI", shown="a fresh temp dir per run, removed after"
    )
    keep_workdir: bool = setting(False, help="keep the per-run temp dir")
    kill_grace_seconds: float = setting(
        3.0, unit="seconds", low=0, high=300, help="SIGTERM → SIGKILL grace on timeout or cancel"
    )
    stdout_cap_bytes: int = setting(
        4 * MIB, unit="bytes", low=1024, high=256 * MIB, help="stdout kept per run"
    )
    stderr_cap_bytes: int = setting(
        MIB, unit="bytes", low=1024, high=256 * MIB, help="stderr kept per run"
    )
    env_allow: tuple[str, ...] = setting(
        (), help="environment names passed to the CLI (empty: the whole environment)"
    )
    env_deny: tuple[str, ...] = setting((), help="environment names withheld from the CLI")
    mcp: bool = setting(
        True,
        help="give the CLI the Lobu tools (a per-run 0600 MCP config, deleted after the run)",
    )
    allowed_permission_modes: tuple[str, ...] = setting(
        SAFE_PERMISSION_MODES,
        choices=PERMISSION_MODES,
        help="the `execution_config` permission modes a run may ask for (see Security)",
    )


@dataclass(frozen=True)
class JournalSettings:
    keep_days: float = setting(
        30.0, unit="days", low=0, high=36500, help="pruning of *acknowledged* runs by age"
    )
    keep_rows: int = setting(
        1000,
        unit="runs",
        low=0,
        high=10_000_000,
        help="pruning of *acknowledged* runs by count; undelivered results are never pruned",
    )
    keep_output_bytes: int = setting(
        32 * 1024,
        unit="bytes",
        low=1024,
        high=256 * 1024 * 1024,
        help="of a settled run's output, its head and tail are kept; undelivered results "
        "keep all of it",
    )


@dataclass(frozen=True)
class LimitSettings:
    """The owner's daily limits (device_agent/agent/limits.py): local only, never raised by
    anything a server sends. A day is the local calendar day."""

    daily_usd: float | None = setting(
        None,
        unit="US dollars",
        low=0,
        above=True,
        high=1_000_000,
        shown="off",
        help="what the CLIs may spend a day, as they report it; runs whose CLI reports no "
        "cost count only towards the other limits",
    )
    daily_tokens: int | None = setting(
        None,
        unit="tokens",
        low=1,
        high=10**15,
        shown="off",
        help="tokens in and out a day, as the CLIs report them",
    )
    daily_runs: int | None = setting(
        None, unit="runs", low=1, high=1_000_000, shown="off", help="runs started a day"
    )

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.daily_usd, self.daily_tokens, self.daily_runs))


@dataclass(frozen=True)
class Settings:
    server: str | None = setting(
        None,
        help="the Lobu server URL; `https://`, or plain `http://` to a loopback address only",
        shown="—",
    )
    token: str | None = setting(None, in_file=False)  # never in a file; never in repr
    worker_id: str | None = setting(
        None,
        help="this device's id; must match the token's if the token is bound",
        shown="generated once and kept in the state dir",
    )
    label: str = setting_from(
        lambda: socket.gethostname().split(".")[0] or "device",
        help="display name on the server",
        shown="the host name",
    )
    platform: str = setting_from(lambda: default_platform(), in_file=False)
    concurrency: int = setting(1, unit="runs", low=1, high=64, help="runs executed at once")
    default_agent: str = setting(
        "claude-code", help="executor profile for runs that name none (`--agent`)"
    )
    # The server reaps a run whose last beat is older than 3 minutes: at most 60 s, one beat
    # may be lost and the next still comes in time.
    heartbeat_seconds: float = setting(
        30.0,
        unit="seconds",
        low=0,
        above=True,
        high=60,
        help="heartbeat interval while a run executes",
        why="the server reaps a run not heartbeated for 3 minutes",
    )
    poll_timeout_seconds: float = setting(
        90.0,
        unit="seconds",
        low=MIN_POLL_TIMEOUT_SECONDS,
        high=600,
        help="read timeout of a poll; a real server warming up holds a poll 13–42 s",
        why=(
            "a server warming up after a boot holds a poll 13-42 s and still claims a run "
            "into it after we gave up, leaving the run stuck for hours"
        ),
    )
    wait_seconds: int = setting(
        25,
        unit="seconds",
        low=0,
        high=MAX_WAIT_SECONDS,
        help="how long a current server may hold an idle poll (long-poll); 0 turns it off",
    )
    request_timeout_seconds: float = setting(
        15.0,
        unit="seconds",
        low=0,
        above=True,
        high=300,
        help="read timeout of the other requests (heartbeat, completion)",
    )
    max_backoff_seconds: float = setting(
        60.0, unit="seconds", low=0, above=True, high=3600, help="cap of the backoff after failures"
    )
    shutdown_grace_seconds: float = setting(
        20.0,
        unit="seconds",
        low=0,
        high=3600,
        help="on SIGTERM, how long running CLIs may finish before they are cancelled",
    )
    server_error_budget: int = setting(
        8,
        unit="refusals",
        low=1,
        high=1000,
        help=(
            "a success report refused this many times in a row with the *same* HTTP 500 "
            '(docs/protocol.md, "What a real server does") is closed as failed; the output '
            "stays in the journal. 502/503/504 and changing errors are retried without limit"
        ),
    )
    client_name: str = setting(
        "device-agent", help="how login, local-init and the token mint name this client"
    )
    account_timeout_seconds: float = setting(
        15.0,
        unit="seconds",
        low=0,
        above=True,
        high=300,
        help="timeout of login, logout, Run now and token rotation requests",
    )
    # A child token lives 90 days: a threshold at or above that would re-mint at every check
    # (docs/protocol.md, "What a real server does").
    rotate_days_left: float = setting(
        30.0,
        unit="days",
        low=1,
        high=90,
        below=True,
        help="re-mint the device token when it has fewer days than this left",
    )
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    journal: JournalSettings = field(default_factory=JournalSettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
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
    """Build settings from the config file, the environment and flags (in that order).

    A value that does not fit its declared key stops here with one `ConfigError` line
    naming the key, where the value came from (the file, the variable or the command
    line) and what it must be, with its unit."""
    env = os.environ if env is None else env
    paths = Paths.resolve(env)
    file_path, named_by = config_file_in_use(paths, config_path, env)
    values = read_config_file(file_path, named_by=named_by)
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
    sources = dict.fromkeys(values, f"config file {file_path}")
    for key, (name, value) in _from_env(env).items():
        values[key] = value
        sources[key] = name
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
            sources[key] = "the command line"
    return validate(_build(values, paths, sources), sources=sources)


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


def read_config_file(path: Path, *, named_by: str | None = None) -> dict[str, Any]:
    """The file's settings as TOML values; `named_by` is the flag or variable that chose this
    file (then it must exist), None for the default file ({} when it is absent)."""
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


def _from_env(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """key -> (the variable that set it, its value)."""
    values: dict[str, tuple[str, str]] = {}
    for key, name in (("server", ENV_SERVER), ("token", ENV_TOKEN), ("worker_id", ENV_WORKER_ID)):
        if env.get(name):
            values[key] = (name, env[name].strip())
    return values


_SECTIONS: Final[Mapping[str, type]] = {
    "executor": ExecutorSettings,
    "journal": JournalSettings,
    "notifications": NotificationSettings,
    "limits": LimitSettings,
}


def _file_keys() -> frozenset[str]:
    """What a config file may set: never the token (the keyring or DEVICE_AGENT_TOKEN keeps
    it) nor the platform (detected; the server refuses what it does not know)."""
    top = (name for name, spec in keys(Settings).items() if spec.in_file)
    return frozenset({*top, *_SECTIONS})


def _build(values: Mapping[str, Any], paths: Paths, sources: Mapping[str, str]) -> Settings:
    declared = keys(Settings)
    top: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for key, value in values.items():
        try:
            if key == "notifications":
                sections[key] = _notifications(value)
            elif key in _SECTIONS:
                sections[key] = _section(key, value)
            elif key in declared:
                top[key] = declared[key].check(key, value)
            else:
                raise Invalid(unknown_key(key, _file_keys()))
        except (Invalid, NotificationConfigError) as exc:
            raise ConfigError(_at(sources.get(key), str(exc))) from None
    return Settings(paths=paths, **top, **sections)


def _section(name: str, value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise Invalid(f"[{name}] must be a table of settings, got {type(value).__name__}")
    cls = _SECTIONS[name]
    return cls(**read_table(cls, value, prefix=f"{name}."))


def _notifications(value: Any) -> NotificationSettings:
    if not isinstance(value, Mapping):
        raise Invalid(f"[notifications] must be a table of settings, got {type(value).__name__}")
    return NotificationSettings.from_mapping(value)


def _at(where: str | None, message: str) -> str:
    return f"{where}: {message}" if where else message


# --------------------------------------------------------------- validation


def validate(settings: Settings, *, sources: Mapping[str, str] | None = None) -> Settings:
    """Check every declared key (settings made in code too) and what no single key can say.
    `sources` maps a key or section to where its value came from, for the message."""
    sources = sources or {}
    for section, values in (
        ("", settings),
        ("executor", settings.executor),
        ("journal", settings.journal),
        ("notifications", settings.notifications),
        ("limits", settings.limits),
    ):
        for name, spec in keys(type(values)).items():
            key = f"{section}.{name}" if section else name
            try:
                spec.check(key, getattr(values, name))
            except Invalid as exc:
                raise ConfigError(_at(sources.get(section or name), str(exc))) from None

    def fail(key: str, message: str) -> NoReturn:
        raise ConfigError(_at(sources.get(key), message))

    if settings.server is not None:
        try:
            settings = replace(settings, server=validate_server_url(settings.server))
        except ConfigError as exc:
            fail("server", str(exc))
    if settings.worker_id is not None and not WORKER_ID_PATTERN.fullmatch(settings.worker_id):
        fail(
            "worker_id",
            f"worker_id {settings.worker_id!r} is not valid: use 1-128 characters "
            "from letters, digits and . _ : -",
        )
    if not settings.client_name.strip():
        fail("client_name", "client_name must not be empty: leave it out to use 'device-agent'")
    if not settings.default_agent:
        fail("default_agent", "default_agent must name an executor profile, e.g. 'claude-code'")
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


# ------------------------------------------------------------ the reference


def config_reference() -> str:
    """The README's table of config keys, made from their declarations: key, default, what
    a valid value is (with its unit), meaning."""
    rows = ["| key | default | value | meaning |", "|---|---|---|---|"]
    for section, cls in (("", Settings), *_SECTIONS.items()):
        for name, spec in keys(cls).items():
            if not spec.in_file:
                continue
            key = f"`[{section}] {name}`" if section else f"`{name}`"
            default = spec.shown or _shown_default(spec, default_of(cls, name))
            rows.append(f"| {key} | {default} | {spec.expectation()} | {spec.help} |")
    return "\n".join(rows) + "\n"


def _shown_default(spec: Spec, value: Any) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return "`[" + ", ".join(f'"{item}"' for item in value) + "]`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if spec.unit == "bytes" and value % MIB == 0:
        return f"`{value}` ({value // MIB} MiB)"
    return f"`{value}`"


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
