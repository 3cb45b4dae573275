"""Declared settings: each key's type, range and unit in one place, and one check for all.

A config key is declared by its dataclass field: the annotation gives its type,
`setting(default, unit=..., low=..., high=...)` its default, range, unit and
meaning. `check` turns a raw value (TOML, the environment, a flag, or the
server's `execution_config`) into that type, or raises `Invalid` with one line
naming the key, what it must be (with its unit) and what it got. NaN and the
infinities are never numbers here: TOML and Python's JSON accept them, and
`nan <= 0` is False, so a range check alone would let them through.

The callers add where the value came from (the config file, a flag, a profile,
the run) and turn `Invalid` into their own error: `ConfigError` (exit 2) at
start, a failed run for `execution_config`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

T = TypeVar("T")

_SPEC: Final = "device_agent.schema"  # the dataclass field metadata key holding a Spec


class Invalid(ValueError):
    """A value does not fit its declared key; the message is one line naming the key, and
    `problem` is the same line without the key (for callers that name it their own way)."""

    def __init__(self, message: str, *, problem: str = "") -> None:
        super().__init__(message)
        self.problem = problem or message


@dataclasses.dataclass(frozen=True)
class Spec:
    """One key: its type, unit, range and meaning.

    `kind` is bool, int, float, str, Path or tuple (a list of strings). A range
    is inclusive unless `above` (the value must be greater than `low`) or
    `below` (smaller than `high`). `choices` limits a string, or each string
    of a list. `why` is appended to a complaint when the range needs a reason.
    """

    kind: type = object  # set from the field's annotation by `keys`
    unit: str = ""  # plural, as it reads after "a number of": "seconds", "bytes"
    low: float | None = None
    high: float | None = None
    above: bool = False
    below: bool = False
    choices: tuple[str, ...] = ()
    optional: bool = False  # None is a value (set from `X | None` by `keys`)
    help: str = ""  # what the key does, for the README's config reference
    shown: str = ""  # the default as the reference shows it, when not the value itself
    why: str = ""
    in_file: bool = True  # False: never read from the config file (the token, the platform)

    def expectation(self) -> str:
        """What a valid value is, in words: "a number of seconds from 60 to 600"."""
        if self.kind is bool:
            return "true or false"
        if self.kind in (int, float):
            noun = "a whole number" if self.kind is int else "a number"
            unit = f" of {self.unit}" if self.unit else ""
            bounds = self.bounds()
            return f"{noun}{unit}{' ' + bounds if bounds else ''}"
        if self.kind is Path:
            return "a path"
        if self.kind is tuple and self.choices:
            return f"a list of some of {', '.join(self.choices)}"
        if self.kind is tuple:
            return "a list of strings"
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        return "a string"

    def bounds(self) -> str:
        low = None if self.low is None else _number(self.low)
        high = None if self.high is None else _number(self.high)
        if low is not None and high is not None:
            if not self.above and not self.below:
                return f"from {low} to {high}"
            first = f"greater than {low}" if self.above else f"at least {low}"
            second = f"below {high}" if self.below else f"at most {high}"
            return f"{first} and {second}"
        if low is not None:
            return f"greater than {low}" if self.above else f"at least {low}"
        if high is not None:
            return f"below {high}" if self.below else f"at most {high}"
        return ""

    def check(self, key: str, value: Any) -> Any:
        """`value` as this key's type, or `Invalid` saying what `key` must be."""
        if value is None and self.optional:
            return None
        converted = self._convert(value)
        if converted is _WRONG or not self._in_range(converted):
            why = f": {self.why}" if self.why else ""
            problem = f"must be {self.expectation()}, got {_shown(value)}{why}"
            raise Invalid(f"{key} {problem}", problem=problem)
        return converted

    def _convert(self, value: Any) -> Any:
        kind = self.kind
        if kind is bool:
            return value if isinstance(value, bool) else _WRONG
        if isinstance(value, bool):  # int(True) is 1: `keep_days = true` is a mistake
            return _WRONG
        # A number is a number: TOML and JSON have them, and flags are parsed to them.
        if kind is int:
            return value if isinstance(value, int) else _WRONG
        if kind is float:
            if not isinstance(value, int | float) or not math.isfinite(value):
                return _WRONG
            return float(value)
        if kind is Path:
            if isinstance(value, Path) or (isinstance(value, str) and value.strip()):
                return Path(value).expanduser()
            return _WRONG
        if kind is tuple:
            if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                return tuple(value)
            return _WRONG
        return value if isinstance(value, str) else _WRONG

    def _in_range(self, value: Any) -> bool:
        if self.kind is tuple:
            return not self.choices or all(item in self.choices for item in value)
        if self.kind is str:
            return not self.choices or value in self.choices
        if self.kind not in (int, float):
            return True
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return False
        return self.high is None or (value < self.high if self.below else value <= self.high)


_WRONG: Final = object()  # what `_convert` returns for a value of the wrong type


def setting(default: T, **spec: Any) -> T:
    """A dataclass field holding a config key: its default, and the rest of its `Spec`."""
    field: T = dataclasses.field(default=default, metadata={_SPEC: Spec(**spec)})
    return field


def setting_from(factory: Callable[[], T], **spec: Any) -> T:
    """`setting` for a default computed when the settings are made (the host name)."""
    field: T = dataclasses.field(default_factory=factory, metadata={_SPEC: Spec(**spec)})
    return field


def keys(cls: type) -> Mapping[str, Spec]:
    """The declared keys of a settings dataclass, their types taken from the annotations."""
    known = _KEYS.get(cls)
    if known is None:
        known = _KEYS[cls] = _declared(cls)
    return known


_KEYS: dict[type, Mapping[str, Spec]] = {}


def _declared(cls: type) -> dict[str, Spec]:
    hints = typing.get_type_hints(cls)
    declared: dict[str, Spec] = {}
    for field in dataclasses.fields(cls):
        spec = field.metadata.get(_SPEC)
        if spec is not None:
            kind, optional = _kind(hints[field.name])
            declared[field.name] = dataclasses.replace(spec, kind=kind, optional=optional)
    return declared


def default_of(cls: type, name: str) -> Any:
    """A field's default (its factory's value for a computed one)."""
    for field in dataclasses.fields(cls):
        if field.name == name:
            if field.default is not dataclasses.MISSING:
                return field.default
            if field.default_factory is not dataclasses.MISSING:
                return field.default_factory()
    raise KeyError(name)


def read_table(
    cls: type, table: Mapping[str, Any], *, prefix: str, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The declared keys of `cls` found in `table`, each checked; `extra` names keys the
    caller reads itself. Any other key is refused, with the keys that exist."""
    declared = {name: spec for name, spec in keys(cls).items() if spec.in_file}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in extra:
            continue
        spec = declared.get(key)
        if spec is None:
            raise Invalid(
                unknown_key(f"{prefix}{key}", {f"{prefix}{k}" for k in (*declared, *extra)})
            )
        values[key] = spec.check(f"{prefix}{key}", value)
    return values


def unknown_key(key: str, known: set[str] | frozenset[str]) -> str:
    return f"unknown setting {key!r}: remove it or use one of {', '.join(sorted(known))}"


def _kind(hint: Any) -> tuple[type, bool]:
    """(type, whether None is allowed) of an annotation: `float`, `Path | None`,
    `tuple[str, ...]`."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _kind(inner)[0], True
    origin = typing.get_origin(hint)
    if origin is tuple:
        return tuple, False
    if hint in (bool, int, float, str, Path):
        return typing.cast(type, hint), False
    raise TypeError(f"no schema kind for {hint!r}")


def _number(value: float) -> str:
    return f"{value:g}" if not float(value).is_integer() else str(int(value))


def _shown(value: Any) -> str:
    """A value as the complaint shows it: floats as TOML spells them (nan, inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf"
    return repr(value)
