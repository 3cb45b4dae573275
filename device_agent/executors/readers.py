"""Output readers: turn what a CLI printed into the run's output, its error and its details.

Readers are pure functions of captured text, chosen and configured by a
profile's `[output]` table. They never raise: output they cannot understand
becomes a `Reading` with a `problem`, which fails the run with a message that
shows the tail of what was printed.

- `TextReader`: stdout is the output; the exit status alone decides success.
- `JsonReader`: one JSON object (Claude Code, Gemini CLI). The object decides
  success: Claude can exit 0 with `is_error: true`, Gemini exits non-zero with
  an `error` object — either way the run's error is the CLI's own message.
- `JsonlReader`: a JSON-lines event stream (Claude Code `--output-format
  stream-json`, Codex `--json`, Gemini CLI `--output-format stream-json`,
  OpenCode `--format json`, pi `--mode json`); the last meaningful event — a
  final message or a failure — decides.
- `FileReader`: a file the CLI wrote (e.g. Codex `--output-last-message FILE`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

TAIL_CHARS: Final = 500
_LAST_CANDIDATES: Final = 50  # how many line-start braces to try before giving up on a JSON object
_OBJECT_START: Final = re.compile(r"(?m)^(?:\[[A-Z]+\] ?)?(\{)")  # Gemini prefixes "[ERROR] "
_decoder: Final = json.JSONDecoder()


@dataclass(frozen=True)
class Captured:
    """What a finished CLI left behind."""

    stdout: str
    stderr: str = ""
    output_file: str | None = None  # content of `{output_file}`, None if the CLI wrote none


@dataclass(frozen=True)
class Reading:
    output: str
    error: str | None = None  # the CLI's own failure message
    problem: str | None = None  # we could not understand what the CLI printed
    details: Mapping[str, Any] = field(default_factory=dict)


class Reader(Protocol):
    def read(self, captured: Captured) -> Reading: ...


@dataclass(frozen=True)
class TextReader:
    def read(self, captured: Captured) -> Reading:
        return Reading(output=captured.stdout.strip())


@dataclass(frozen=True)
class FileReader:
    def read(self, captured: Captured) -> Reading:
        if captured.output_file is None:
            return Reading(
                output=captured.stdout.strip(),
                problem="the CLI did not write its output file" + _tail_note(captured.stdout),
            )
        return Reading(output=captured.output_file.strip())


@dataclass(frozen=True)
class JsonReader:
    """One JSON object whose fields are mapped by dotted paths (`error.message`)."""

    text: str  # the final answer, e.g. "result"
    failed_if: tuple[str, ...] = ()  # a truthy value at any of these marks a failed run
    error: tuple[str, ...] = ()  # where the failure message is; the first non-empty wins
    details: Mapping[str, str] = field(default_factory=dict)  # detail name -> path
    stderr: bool = False  # also look on stderr (Gemini prints its error object there)

    def read(self, captured: Captured) -> Reading:
        obj = last_json_object(captured.stdout)
        if obj is None and self.stderr:
            obj = last_json_object(captured.stderr)
        if obj is None:
            return Reading(
                output=captured.stdout.strip(),
                problem="expected a JSON object on stdout but found none"
                + _tail_note(captured.stdout or captured.stderr),
            )
        details = _pick_details(obj, self.details)
        text = dig(obj, self.text)
        output = text if isinstance(text, str) else ""
        failed = next((path for path in self.failed_if if dig(obj, path)), None)
        if failed is not None:
            message = first_message(obj, self.error) or (
                f"the CLI reported a failure ({failed}={json.dumps(dig(obj, failed))})"
            )
            return Reading(output=output, error=message, details=details)
        if text is None:
            return Reading(
                output="",
                problem=f"the JSON object has no {self.text!r} field "
                f"(it has: {', '.join(sorted(obj)) or 'nothing'})",
                details=details,
            )
        return Reading(output=output, details=details)


Scalar = str | int | float | bool
Match = Mapping[str, Scalar]  # what an event looks like: dotted path -> value


@dataclass(frozen=True)
class JsonlReader:
    """A JSON-lines event stream: the last final-message or failure event decides the run."""

    final: Match  # what a final-message event looks like
    text: str  # the message's path inside that event ("*" spans a list: its texts are joined)
    failure_types: tuple[str, ...] = ()  # event types that fail the run
    failures: tuple[Match, ...] = ()  # other events that fail it (Claude's `is_error: true`)
    error: tuple[str, ...] = ()  # where a failure event keeps its message
    details: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # name -> (type|*, path)
    # A flag (path) marking a final event as one chunk of a message streamed in pieces
    # (Gemini's `delta`): the message is the run of such chunks that ends with the last one.
    join: str | None = None

    def read(self, captured: Captured) -> Reading:
        events = json_lines(captured.stdout)
        if not events:
            return Reading(
                output=captured.stdout.strip(),
                problem="expected JSON lines on stdout but found none"
                + _tail_note(captured.stdout or captured.stderr),
            )
        details = self._details(events)
        at = next((i for i in range(len(events) - 1, -1, -1) if self._is_meaningful(events[i])), -1)
        if at < 0:
            last_type = events[-1].get("type")
            return Reading(
                output="",
                problem="the event stream ended without a final message "
                f"(last event: {last_type!r})" + _tail_note(captured.stderr or captured.stdout),
                details=details,
            )
        decisive = events[at]
        if self._is_failure(decisive):
            message = first_message(decisive, self.error) or self._failure_words(decisive)
            return Reading(output=_text(dig(decisive, self.text)), error=message, details=details)
        return Reading(output=self._answer(events, at), details=details)

    def _answer(self, events: list[dict[str, Any]], end: int) -> str:
        """The text of the final message `events[end]`; a message streamed in chunks is joined
        back together."""
        if self.join is None or not dig(events[end], self.join):
            return _text(dig(events[end], self.text))
        start = end
        while (
            start > 0
            and _matches(events[start - 1], self.final)
            and dig(events[start - 1], self.join)
        ):
            start -= 1
        return "".join(_text(dig(event, self.text)) for event in events[start : end + 1])

    def _is_failure(self, event: Mapping[str, Any]) -> bool:
        return event.get("type") in self.failure_types or any(
            _matches(event, match) for match in self.failures
        )

    def _is_meaningful(self, event: Mapping[str, Any]) -> bool:
        return self._is_failure(event) or _matches(event, self.final)

    def _failure_words(self, event: Mapping[str, Any]) -> str:
        """What a failure event without a message of its own is reported as."""
        if event.get("type") in self.failure_types:
            return f"the CLI reported {event['type']}"
        match = next(m for m in self.failures if _matches(event, m))
        shown = ", ".join(f"{path}={json.dumps(value)}" for path, value in match.items())
        return f"the CLI reported a failure ({shown})"

    def _details(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, (event_type, path) in self.details.items():
            for event in reversed(events):
                if event_type in ("*", event.get("type")):
                    value = dig(event, path)
                    if value is not None:
                        found[name] = value
                        break
        return found


# ------------------------------------------------------------------ helpers


def dig(obj: Any, path: str) -> Any:
    """`dig({"a": {"b": [1, 2]}}, "a.b.1") == 2`; None where the path leads nowhere.

    A `*` spans a list: `dig({"c": [{"t": "x"}, {}, {"t": "y"}]}, "c.*.t") == ["x", "y"]`
    (the items where the rest of the path leads somewhere)."""
    parts = path.split(".")
    for index, part in enumerate(parts):
        if part == "*":
            if not isinstance(obj, list):
                return None
            rest = ".".join(parts[index + 1 :])
            found = (dig(item, rest) if rest else item for item in obj)
            return [value for value in found if value is not None]
        if isinstance(obj, Mapping):
            obj = obj.get(part)
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return None
    return obj


def first_message(obj: Mapping[str, Any], paths: tuple[str, ...]) -> str | None:
    """The first non-empty text among `paths` (a list of strings is joined)."""
    for path in paths:
        value = dig(obj, path)
        if isinstance(value, list):
            value = "; ".join(str(v) for v in value if isinstance(v, str) and v.strip())
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def last_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object in `text`, tolerating log lines around it; the last one wins."""
    stripped = text.strip()
    if not stripped:
        return None
    try:
        whole = json.loads(stripped)
    except ValueError:
        pass
    else:
        return whole if isinstance(whole, dict) else None
    starts = [m.start(1) for m in _OBJECT_START.finditer(stripped)][-_LAST_CANDIDATES:]
    for start in reversed(starts):
        try:
            value, _ = _decoder.raw_decode(stripped, start)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` that is a JSON object; other lines (banners, warnings) are skipped."""
    events: list[dict[str, Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            events.append(value)
    return events


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def _tail_note(text: str) -> str:
    shown = tail(text)
    return f"; last output: {shown}" if shown else "; it printed nothing"


def _matches(event: Mapping[str, Any], match: Match) -> bool:
    """Whether every path of `match` leads to its value (`true` is not `1`)."""
    for path, value in match.items():
        found = dig(event, path)
        if found != value or isinstance(found, bool) != isinstance(value, bool):
            return False
    return True


def _text(value: Any) -> str:
    """A message's text: a string, or the strings of a list joined by line breaks."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(item for item in value if isinstance(item, str))
    return ""


def _pick_details(obj: Mapping[str, Any], paths: Mapping[str, str]) -> dict[str, Any]:
    return {name: value for name, path in paths.items() if (value := dig(obj, path)) is not None}
