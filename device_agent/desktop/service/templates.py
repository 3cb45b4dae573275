"""The files in `config/`, filled in: a launchd plist, a systemd unit, an XDG autostart entry."""

from __future__ import annotations

import plistlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from device_agent.desktop.service.spec import ServiceError
from device_agent.paths import shipped_dir


def template(name: str) -> str:
    return (shipped_dir("config") / name).read_text(encoding="utf-8")


def fill_plist(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """A plist template, read by plistlib and filled in: dumped, it is always a valid plist."""
    data = plistlib.loads(template(name).encode())
    filled: dict[str, Any] = _fill(data, values)
    return filled


def _fill(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, dict):
        return {key: _fill(item, values) for key, item in value.items()}
    if isinstance(value, list):
        filled: list[Any] = []
        for item in value:
            result = _fill(item, values)
            if isinstance(item, str) and isinstance(result, list):
                filled.extend(result)  # "@PROGRAM@" stands for several arguments
            else:
                filled.append(result)
        return filled
    if isinstance(value, str):
        whole = re.fullmatch(r"@([A-Z_]+)@", value)
        if whole:
            return values[whole.group(1)]
        return re.sub(r"@([A-Z_]+)@", lambda m: str(values[m.group(1)]), value)
    return value


def render_text(name: str, values: Mapping[str, str]) -> str:
    """Fill a text template; a placeholder filled with "" takes its line with it."""
    lines = []
    for line in template(name).splitlines():
        if re.fullmatch(r"@[A-Z_]+@", line.strip()) and not values[line.strip()[1:-1]]:
            continue
        lines.append(re.sub(r"@([A-Z_]+)@", lambda m: values[m.group(1)], line))
    return "\n".join(lines) + "\n"


def systemd_quote(arg: str, *, command: bool = False) -> str:
    """One word of an Environment= line (or ExecStart=, `command`), taken literally by systemd."""
    escaped = _one_line(arg).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if command:
        escaped = escaped.replace("$", "$$")  # ExecStart= expands $VARIABLES, even in quotes
    return f'"{escaped}"'


def systemd_path(path: Path) -> str:
    """The value of a path setting such as EnvironmentFile=, which takes no quotes."""
    return _one_line(str(path)).replace("%", "%%")


def _one_line(arg: str) -> str:
    if "\n" in arg:
        raise ServiceError(f"{arg!r} contains a line break: install device-agent at another path")
    return arg


def desktop_exec(argv: Sequence[str]) -> str:
    """The Exec= value of an XDG .desktop file; refuse what its quoting rules make fragile."""
    words = []
    for arg in argv:
        if re.search(r'["`$\\\n]', arg):
            raise ServiceError(
                f"{arg!r} contains characters an autostart entry cannot quote safely: "
                "install device-agent at a plainer path, or start the tray yourself"
            )
        quoted = f'"{arg}"' if re.search(r"[\s'<>~|&;*?#()]", arg) else arg
        words.append(quoted.replace("%", "%%"))
    return " ".join(words)
