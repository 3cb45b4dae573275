"""The programs that show a notification: osascript (macOS), notify-send or gdbus (Linux).

Each gets the title and body as arguments of an argv list, never inside a
script or a shell line.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

_MAC_SCRIPT: Final = (
    "on run argv",
    "display notification (item 2 of argv) with title (item 1 of argv)",
    "end run",
)


def osascript_argv(binary: str, title: str, body: str, priority: str) -> list[str]:
    """The text travels as arguments of the script, never inside it: nothing to escape.

    osascript reads options with getopt, so a text starting with "-" gets a
    leading space rather than being taken for an option.
    """
    script = [part for line in _MAC_SCRIPT for part in ("-e", line)]
    return [
        binary,
        *script,
        *(f" {text}" if text.startswith("-") else text for text in (title, body)),
    ]


def notify_send_argv(binary: str, title: str, body: str, priority: str) -> list[str]:
    urgency = {"low": "low", "normal": "normal", "high": "critical"}[priority]
    # The body may be rendered as markup by the notification server: escape it.
    return [
        binary,
        "--app-name=device-agent",
        f"--urgency={urgency}",
        "--",
        title,
        _escape_markup(body),
    ]


def gdbus_argv(binary: str, title: str, body: str, priority: str) -> list[str]:
    urgency = {"low": 0, "normal": 1, "high": 2}[priority]
    return [
        binary,
        "call",
        "--session",
        "--dest=org.freedesktop.Notifications",
        "--object-path=/org/freedesktop/Notifications",
        "--method=org.freedesktop.Notifications.Notify",
        "'device-agent'",
        "0",
        "''",
        gvariant_string(title),
        gvariant_string(_escape_markup(body)),
        "[]",
        f"{{'urgency': <byte {urgency}>}}",
        "-1",
    ]


def _escape_markup(text: str) -> str:
    return html.escape(text, quote=False)


def gvariant_string(text: str) -> str:
    """A GVariant text-format string literal (gdbus parses its arguments as GVariant text)."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


ArgvBuilder = Callable[[str, str, str, str], list[str]]
BACKENDS: Final[Mapping[str, ArgvBuilder]] = {
    "osascript": osascript_argv,
    "notify-send": notify_send_argv,
    "gdbus": gdbus_argv,
}
PREFERRED: Final = {"darwin": ("osascript",), "linux": ("notify-send", "gdbus")}


@dataclass(frozen=True)
class Backend:
    name: str
    path: str

    def argv(self, title: str, body: str, priority: str) -> list[str]:
        return BACKENDS[self.name](self.path, title, body, priority)
