"""`execution_config` from the server, checked and turned into a CLI's flags.

The server is untrusted input: only known keys with checked values reach argv,
and nothing can become a flag of its own (docs/protocol.md, "execution_config
and the CLI").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from device_agent.schema import Invalid, Spec
from device_agent.server.protocol import is_number

if TYPE_CHECKING:
    from device_agent.executors.profiles import Profile

DEFAULT_TIMEOUT_SECONDS: Final = 600.0
MAX_TIMEOUT_SECONDS: Final = 86400.0
PERMISSION_MODES: Final = ("acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "plan")
# Modes that keep the CLI asking, or only reading: what a run may ask for unless the
# device owner allows more in `[executor] allowed_permission_modes`. The others switch
# the CLI's safety checks off: "bypassPermissions" (codex danger-full-access, gemini
# yolo, opencode --auto) and Claude Code's "auto" (only a classifier in the way).
SAFE_PERMISSION_MODES: Final = ("default", "acceptEdits", "plan", "dontAsk")
EFFORTS: Final = ("low", "medium", "high")
MAX_NUMBER: Final = 1e9  # no execution_config number needs more; 1e308 is an attack
# A value that becomes one argv element: no whitespace, and no leading "-" that
# would turn a model name sent by the server into a flag of its own.
_PLAIN_VALUE: Final = re.compile(r"[A-Za-z0-9_.:/@+\[\]][A-Za-z0-9_.:/@+\[\]=,-]{0,199}")


class Refused(Exception):
    """The run cannot start; the message becomes its error."""


# The keys the agent reads itself, declared like the config file's (device_agent/schema.py):
# type, range and unit. A value that does not fit fails the run, never the loop.
KEYS: Final[Mapping[str, Spec]] = {
    "timeout_seconds": Spec(float, unit="seconds", low=1, high=MAX_TIMEOUT_SECONDS),
    "max_budget_usd": Spec(float, unit="US dollars", low=0, above=True, high=MAX_NUMBER),
    "permission_mode": Spec(str, choices=PERMISSION_MODES),
    "effort": Spec(str, choices=EFFORTS),
    "model": Spec(str),
}


def checked(key: str, value: Any) -> Any:
    """`value` of a declared `execution_config` key as its type, or `Refused` in one line."""
    try:
        return KEYS[key].check(f"execution_config.{key}", value)
    except Invalid as exc:
        raise Refused(str(exc)) from None


def timeout_of(config: Mapping[str, Any]) -> float:
    value = config.get("timeout_seconds")
    if value is None:
        return DEFAULT_TIMEOUT_SECONDS
    timeout: float = checked("timeout_seconds", value)
    return timeout


def check_consent(profile: Profile, config: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse a permission mode the device owner has not allowed: the server must not be
    able to switch a CLI's safety checks off (docs/protocol.md, "execution_config and the
    CLI"). A CLI with no permission flag is not widened by any mode, so it is not asked."""
    mode = config.get("permission_mode")
    if mode is None or mode in allowed or "permission_mode" not in profile.options:
        return
    raise Refused(
        f"execution_config.permission_mode {mode!r} is not allowed on this device: the owner "
        f"can add it to [executor] allowed_permission_modes in the config file (now: "
        f"{', '.join(allowed) or 'none'})"
    )


def option_flags(profile: Profile, config: Mapping[str, Any]) -> tuple[list[str], tuple[str, ...]]:
    """The flags for `config` in profile order, and the keys this CLI has no flag for."""
    given = {
        key: value
        for key, value in config.items()
        if key != "timeout_seconds" and value is not None
    }
    texts = {
        key: _option_value(key, value)
        for key, value in given.items()
        if key in KEYS or key in profile.options
    }
    flags: list[str] = []
    ignored = [key for key in given if key not in profile.options]
    for key, option in profile.options.items():
        if key in texts:
            rendered = option.render(texts[key])
            if rendered is None:  # e.g. permission_mode "dontAsk" for a CLI without one
                ignored.append(f"{key}={texts[key]}")
            else:
                flags.extend(rendered)
    return flags, tuple(ignored)


def _option_value(key: str, value: Any) -> str:
    """The argv text of a value: a declared key's value checked first, every value plain."""
    if key in KEYS:
        value = checked(key, value)
    return _plain(key, value)


def _sane_number(value: Any) -> bool:
    return is_number(value) and math.isfinite(value) and abs(value) <= MAX_NUMBER


def _plain(key: str, value: Any) -> str:
    if _sane_number(value):
        return _number_text(value)
    if isinstance(value, str) and _PLAIN_VALUE.fullmatch(value):
        return value
    raise Refused(
        f"execution_config.{key} {value!r} cannot be passed to a CLI: use up to 200 letters, "
        "digits and . _ : / @ + [ ] = , - (not starting with -)"
    )


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def capped_budget(
    profile: Profile, config: Mapping[str, Any], left_usd: float | None
) -> Mapping[str, Any]:
    """`config` with its `max_budget_usd` no higher than `left_usd`, what is left of the
    owner's daily dollar limit (device_agent/agent/limits.py), for a CLI with a per-run
    budget flag: the server may lower a run's budget, never raise it past the owner's
    limit. A run that names no budget gets `left_usd`. Unchanged when there is no limit or
    the CLI has no such flag; a value that is not a number is left for `checked` to refuse."""
    if left_usd is None or "max_budget_usd" not in profile.options:
        return config
    asked = config.get("max_budget_usd")
    if asked is not None and (not _sane_number(asked) or asked <= left_usd):
        return config
    return {**config, "max_budget_usd": left_usd}
