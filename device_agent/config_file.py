"""Small, careful edits of the config file: the top-level keys `login` and `setup` remember.

The user's file keeps its comments, order and formatting: tomlkit edits the parsed document
in place and only the keys asked for change. Before the old file is replaced, the new text
is read back with the parser `config.load` uses and must hold exactly the old settings plus
the new values, so an edit can never change or drop another setting. The file is written
0600 and replaced atomically (readers see the old file or the new one, never half of one);
a config file that is a symlink (dotfiles) is written through to its target.

A key the file already sets to another value is left alone unless the caller says to
replace it: the caller says which value wins and how to change it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import tomlkit
from tomlkit.exceptions import TOMLKitError

from device_agent.errors import ConfigError
from device_agent.paths import ensure_private_dir

FILE_MODE: Final = 0o600


@dataclass(frozen=True)
class Remembered:
    """What `remember` did: the keys it wrote, and the keys the file sets otherwise."""

    path: Path
    written: dict[str, str] = field(default_factory=dict)
    kept: dict[str, Any] = field(default_factory=dict)  # key -> the file's own value


def remember(
    path: Path,
    values: Mapping[str, str],
    *,
    replace: Collection[str] = (),
    same: Mapping[str, Callable[[Any, str], bool]] | None = None,
) -> Remembered:
    """Set the top-level `values` in the config file at `path`, creating it if need be.

    A key the file already sets to a different value is kept (and reported in `kept`)
    unless it is named in `replace`. `same` may give, per key, a function that tells
    whether the file's value means the same as ours (e.g. a URL with a trailing slash).
    Nothing is written when nothing changes.
    """
    text = _read_text(path)
    before = _parse(path, text)
    written: dict[str, str] = {}
    kept: dict[str, Any] = {}
    for key, value in values.items():
        if key not in before:
            written[key] = value
            continue
        current = before[key]
        equal = (same or {}).get(key, _equal)
        if equal(current, value):
            continue
        if key in replace:
            written[key] = value
        else:
            kept[key] = current
    if written:
        _write(path, _edited(path, text, before, written))
    return Remembered(path=path, written=written, kept=kept)


def _equal(current: Any, value: str) -> bool:
    return bool(current == value)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        return dict(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _edited(path: Path, text: str, before: Mapping[str, Any], values: Mapping[str, str]) -> str:
    """The file's text with `values` set at the top level, checked by reading it back."""
    shown = ", ".join(f"{key} = {tomlkit.string(v).as_string()}" for key, v in values.items())
    by_hand = f"add {shown} to its top (before any [section]) yourself"
    try:
        document = tomlkit.parse(text)
        for key, value in values.items():
            document[key] = value
        new = tomlkit.dumps(document)
    except TOMLKitError as exc:
        raise ConfigError(f"cannot update config file {path} ({exc}): {by_hand}") from None
    if not new.endswith("\n"):
        new += "\n"
    try:
        after = tomllib.loads(new)
    except tomllib.TOMLDecodeError:
        after = None
    if after != {**before, **values}:
        raise ConfigError(
            f"cannot update config file {path} without changing other settings: {by_hand}"
        )
    return new


def _write(path: Path, text: str) -> None:
    """Replace the file atomically with `text`, mode 0600, through a symlink to its target."""
    target = path.resolve() if path.is_symlink() else path
    folder = target.parent
    if not folder.exists():
        ensure_private_dir(folder)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"cannot write config file {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise ConfigError(f"cannot write config file {path}: {exc.strerror}") from None
