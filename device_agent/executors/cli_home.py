"""A private stand-in for a CLI's home folder: the user's own setup, plus the Lobu tools.

Some CLIs take per-run MCP servers only from a settings file they find under their home
folder, which a variable may move (Gemini CLI: `$GEMINI_CLI_HOME/.gemini/settings.json`).
Its system settings file is honoured only when root owns it and every folder above it,
and its project settings file sits in the user's workdir, where a CLI that commits its
work would commit the token. So a run gets a home of its own, inside the run's private
0700 folder (removed when the run ends):

- its settings file is the user's own (`~/<settings>`, comments allowed, as the CLI
  reads it) with the run's MCP config merged over it, written 0600;
- every other entry the profile names (`share`, e.g. the rest of `~/.gemini`, where the
  user's login lives) is a symbolic link to the user's own, so their login, history
  and preferences still apply.

The variable (`[mcp.home] env`) then names that folder in the CLI's environment. When
the user's own settings cannot be read as a JSON object, no home is made: the CLI runs
with the user's setup and without the Lobu tools, and the caller says so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from device_agent.executors.profiles import HomeSpec


class UnreadableSettings(Exception):
    """The user's own settings file exists but is not a JSON object (message: why)."""


def user_home(spec: HomeSpec, env: Mapping[str, str]) -> Path:
    """The CLI's home folder as the user has it: the variable's value, else HOME."""
    return Path(env.get(spec.env) or env.get("HOME") or Path.home())


def own_settings(path: Path) -> dict[str, Any]:
    """The user's settings at `path` ({} when there is none); raises `UnreadableSettings`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableSettings(f"cannot read {path}: {exc}") from None
    try:
        value = json.loads(strip_json_comments(text)) if text.strip() else {}
    except ValueError as exc:
        raise UnreadableSettings(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UnreadableSettings(f"{path} does not hold a JSON object")
    return value


def merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `over` merged into it: objects key by key, anything else replaced."""
    result = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def link_shared(spec: HomeSpec, own_home: Path, home: Path) -> None:
    """Link each entry `share` names from the user's home into the run's (never the
    settings file itself, which is the run's own)."""
    for pattern in spec.share:
        for source in sorted(own_home.glob(pattern)):
            relative = source.relative_to(own_home)
            if relative == Path(spec.settings):
                continue
            target = home / relative
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not os.path.lexists(target):
                target.symlink_to(source)


def strip_json_comments(text: str) -> str:
    """`text` without `//` and `/* */` comments outside strings, as JSON-with-comments
    readers (Gemini CLI's strip-json-comments) take it; a comment becomes spaces, so that
    a parse error still points at the right column."""
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        char = text[i]
        if in_string:
            out.append(char)
            if char == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if char == '"':
                in_string = False
            i += 1
        elif char == '"':
            in_string = True
            out.append(char)
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append("".join(c if c == "\n" else " " for c in text[i:end]))
            i = end
        else:
            out.append(char)
            i += 1
    return "".join(out)
