"""Desktop notifications for finished runs.

The policy (`policy.py`) decides whether a finished run is worth showing; the
settings it follows are the `[notifications]` table (`config.py`); showing one
runs `osascript` (macOS) or `notify-send` / `gdbus` (Linux) (`backends.py`) as
a child process with an argv list, in the background: it never blocks or fails
a run. `Notifier` (`notifier.py`) picks the backend and is what the agent calls
once a run has finished.

This package exports the settings and the backends' argv builders, which the
config needs; the policy and the notifier are imported from their own modules.
"""

from __future__ import annotations

from device_agent.desktop.notify.backends import (
    BACKENDS,
    ArgvBuilder,
    Backend,
    gdbus_argv,
    gvariant_string,
    notify_send_argv,
    osascript_argv,
)
from device_agent.desktop.notify.config import (
    PRIORITIES,
    NotificationConfigError,
    NotificationSettings,
    TargetSetting,
)

__all__ = [
    "BACKENDS",
    "PRIORITIES",
    "ArgvBuilder",
    "Backend",
    "NotificationConfigError",
    "NotificationSettings",
    "TargetSetting",
    "gdbus_argv",
    "gvariant_string",
    "notify_send_argv",
    "osascript_argv",
]
