"""OS notifications when a run finishes, under a policy that respects the user's attention.

The policy (`policy.py`) decides whether a finished run is worth showing; the
settings it follows are the `[notifications]` table (`config.py`); showing one
runs `osascript` (macOS) or `notify-send` / `gdbus` (Linux) (`backends.py`) as
a child process with an argv list, in the background: it never blocks or fails
a run. `Notifier` (`notifier.py`) picks the backend and is what the runner calls.

Only the settings and the backends' argv builders load with this package: the
config is read before the first poll. The policy and the notifier are imported
when first used — a run has finished, `doctor` looks for a notifier — so that
`device-agent run` does not pay for them at start-up.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any, Final

from device_agent.notify.backends import (
    BACKENDS,
    ArgvBuilder,
    Backend,
    gdbus_argv,
    gvariant_string,
    notify_send_argv,
    osascript_argv,
)
from device_agent.notify.config import (
    PRIORITIES,
    NotificationConfigError,
    NotificationSettings,
    TargetSetting,
)

if TYPE_CHECKING:
    from device_agent.notify.notifier import SPAWN_TIMEOUT, Notifier, Which, check, find_backend
    from device_agent.notify.policy import (
        MAX_BODY,
        MAX_TITLE,
        NOTIFYING_CHANNELS,
        Decision,
        FinishedRun,
        NotificationPolicy,
        clean,
        message,
    )

_ON_FIRST_USE: Final = {
    "notifier": ("SPAWN_TIMEOUT", "Notifier", "Which", "check", "find_backend"),
    "policy": (
        "MAX_BODY",
        "MAX_TITLE",
        "NOTIFYING_CHANNELS",
        "Decision",
        "FinishedRun",
        "NotificationPolicy",
        "clean",
        "message",
    ),
}
_MODULE_OF: Final = {name: module for module, names in _ON_FIRST_USE.items() for name in names}

__all__ = [
    "BACKENDS",
    "MAX_BODY",
    "MAX_TITLE",
    "NOTIFYING_CHANNELS",
    "PRIORITIES",
    "SPAWN_TIMEOUT",
    "ArgvBuilder",
    "Backend",
    "Decision",
    "FinishedRun",
    "NotificationConfigError",
    "NotificationPolicy",
    "NotificationSettings",
    "Notifier",
    "TargetSetting",
    "Which",
    "check",
    "clean",
    "find_backend",
    "gdbus_argv",
    "gvariant_string",
    "message",
    "notify_send_argv",
    "osascript_argv",
]


def __getattr__(name: str) -> Any:
    """A name of the policy or the notifier, imported when first asked for (PEP 562)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
