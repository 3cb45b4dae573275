"""`execution_config` from the server, checked and turned into a CLI's flags.

The server is untrusted input: only known keys with checked values reach argv,
and nothing can become a flag of its own (docs/protocol.md, "execution_config
and the CLI").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from device_agent.executors.profiles import Profile
from device_agent.server.protocol import is_number

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


def timeout_of(config: Mapping[str, Any]) -> float:
    value = config.get("timeout_seconds")
    if value is None:
        return DEFAULT_TIMEOUT_SECONDS
    if not is_number(value) or not 1 <= value <= MAX_TIMEOUT_SECONDS:
        raise Refused(
            f"execution_config.timeout_seconds must be a number of seconds from 1 to "
            f"{MAX_TIMEOUT_SECONDS:g}, got {value!r}"
        )
    return float(value)


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
        if key in _VALIDATORS or key in profile.options
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
    validate = _VALIDATORS.get(key, _plain)
    return validate(key, value)


_Validator = Callable[[str, Any], str]


def _one_of(choices: tuple[str, ...]) -> _Validator:
    def validate(key: str, value: Any) -> str:
        if value not in choices:
            raise Refused(
                f"execution_config.{key} {value!r} is not allowed: use one of {', '.join(choices)}"
            )
        return str(value)

    return validate


def _positive_number(key: str, value: Any) -> str:
    if not _sane_number(value) or value <= 0:
        raise Refused(
            f"execution_config.{key} must be a positive number up to {MAX_NUMBER:g}, got {value!r}"
        )
    return _number_text(value)


def _sane_number(value: Any) -> bool:
    return is_number(value) and math.isfinite(value) and abs(value) <= MAX_NUMBER


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise Refused(f"execution_config.{key} must be a string, got {value!r}")
    return _plain(key, value)


def _plain(key: str, value: Any) -> str:
    if _sane_number(value):
        return _number_text(value)
    if isinstance(value, str) and _PLAIN_VALUE.fullmatch(value):
        return value
    raise Refused(
        f"execution_config.{key} {value!r} cannot be passed to a CLI: use up to 200 letters, "
        "digits and . _ : / @ + [ ] = , - (not starting with -)"
    )


_VALIDATORS: Final[Mapping[str, _Validator]] = {
    "model": _text,
    "max_budget_usd": _positive_number,
    "permission_mode": _one_of(PERMISSION_MODES),
    "effort": _one_of(EFFORTS),
}


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
