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

Output past the executor's cap is cut (`Captured.stdout_cut_at`). The JSON
readers then say so, and read what can be read: the members of a JSON object
that came before the cut (the head of the one it ends inside), or the whole
lines of a stream.

What a run cost is read from the same output, by the CLI's own report (`usage_of`,
keyed by profile): cost in US dollars where the CLI states one, tokens in and out
where it counts them, nothing guessed — from the event the CLI puts them in when it
streams (Claude Code's and Gemini CLI's last `result`, Codex's `turn.completed`,
OpenCode's `step_finish`, pi's assistant `message_end`), else its one JSON object.
It becomes the reading's `usage` detail.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Protocol

from device_agent.agent.result import TRUNCATED

TAIL_CHARS: Final = 500
_MIB: Final = 1024 * 1024
_RAISE_CAP: Final = "; raise [executor] stdout_cap_bytes in the config to receive all of it"
_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")
_LAST_CANDIDATES: Final = 50  # how many line-start braces to try before giving up on a JSON object
_OBJECT_START: Final = re.compile(r"(?m)^(?:\[[A-Z]+\] ?)?(\{)")  # Gemini prefixes "[ERROR] "
_decoder: Final = json.JSONDecoder()


@dataclass(frozen=True)
class Captured:
    """What a finished CLI left behind."""

    stdout: str
    stderr: str = ""
    output_file: str | None = None  # content of `{output_file}`, None if the CLI wrote none
    # The cap stdout was cut at, in bytes (it then ends with a TRUNCATED line); None: whole.
    stdout_cut_at: int | None = None


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
        if captured.stdout_cut_at is not None:
            cut = self._read_cut(captured, captured.stdout_cut_at)
            if cut is not None:
                return cut
        obj = last_json_object(captured.stdout)
        if obj is None and self.stderr:
            obj = last_json_object(captured.stderr)
        if obj is None:
            return Reading(
                output=captured.stdout.strip(),
                problem="expected a JSON object on stdout but found none"
                + _tail_note(captured.stdout or captured.stderr),
            )
        return self._from_object(obj)

    def _from_object(self, obj: dict[str, Any]) -> Reading:
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

    def _read_cut(self, captured: Captured, cap: int) -> Reading | None:
        """Stdout cut at the cap: the object it ends inside, read as far as it goes. None
        when a whole object ends before the cut (read as usual)."""
        text = uncut(captured.stdout)
        starts = [m.start(1) for m in _OBJECT_START.finditer(text)]
        if starts:
            try:
                _decoder.raw_decode(text, starts[-1])
            except ValueError:
                pass
            else:
                return None
        obj, cut_in = partial_object(text, starts[-1]) if starts else ({}, None)
        passed = f"its JSON answer passed the {cap_words(cap)} and was cut"
        if not obj:
            if self.stderr and (error := last_json_object(captured.stderr)) is not None:
                return self._from_object(error)
            return Reading(
                output=text.strip(),
                problem=f"{passed} before a JSON object could be read{_RAISE_CAP}"
                + _tail_note(text),
            )
        reading = self._from_object(obj)
        answer = dig(obj, self.text)
        if reading.error is not None:
            return reading  # the CLI said it failed, before the cut
        if isinstance(answer, str) and not _within(cut_in, self.text):
            return reading  # the answer is whole: the cut came after it
        if isinstance(answer, str):
            return Reading(
                output=answer,
                problem=f"{passed} inside its {self.text!r} field: the output is the first "
                f"{len(answer)} characters of it{_RAISE_CAP}",
                details=reading.details,
            )
        return Reading(
            output="",
            problem=f"{passed} before its {self.text!r} field (read: "
            f"{', '.join(sorted(obj))}){_RAISE_CAP}",
            details=reading.details,
        )


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
        if captured.stdout_cut_at is not None:
            return self._read_cut(captured, captured.stdout_cut_at)
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

    def _read_cut(self, captured: Captured, cap: int) -> Reading:
        """Stdout cut at the cap: its whole lines are read; the last message among them may
        not be the last the CLI wrote, so the run fails with it as its output."""
        text = uncut(captured.stdout)
        events = json_lines(text)  # the line the cut went through is not whole: left out
        passed = f"its output passed the {cap_words(cap)} and was cut"
        if not events:
            return Reading(
                output=text.strip(),
                problem=f"{passed} before its first whole JSON line{_RAISE_CAP}" + _tail_note(text),
            )
        details = self._details(events)
        decisive = next((e for e in reversed(events) if self._is_meaningful(e)), None)
        whole = f"{len(events)} whole JSON line{'' if len(events) == 1 else 's'}"
        if decisive is None:
            return Reading(
                output="",
                problem=f"{passed} after {whole}, none of them a final message (last event: "
                f"{events[-1].get('type')!r}){_RAISE_CAP}",
                details=details,
            )
        if self._is_failure(decisive):
            message = first_message(decisive, self.error) or self._failure_words(decisive)
            return Reading(output="", error=message, details=details)
        message = dig(decisive, self.text)
        return Reading(
            output=message if isinstance(message, str) else "",
            problem=f"{passed} after {whole}: the output is the last whole message before the "
            f"cut, and a later one may be missing{_RAISE_CAP}",
            details=details,
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


# ------------------------------------------------------------------ usage

MAX_TOKENS: Final = 2**53  # more tokens than any run reads; a bigger count is not a count
MAX_COST_USD: Final = 1e9  # likewise for dollars


@dataclass(frozen=True)
class Usage:
    """What one CLI run cost, as the CLI itself reported it. None: the CLI did not say.

    `tokens_in` counts every input token the model read, cached or not (Claude's
    `input_tokens` leaves cache reads and writes out, Codex's and Gemini's include
    them: the sum is what is comparable). `tokens_out` counts what it wrote,
    thinking included.
    """

    cost_usd: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None

    def as_detail(self) -> dict[str, float | int | None]:
        return {
            "cost_usd": self.cost_usd,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
        }

    @classmethod
    def from_detail(cls, value: Any) -> Usage | None:
        """A `usage` detail read back (from the journal); None if it is not one."""
        if not isinstance(value, Mapping):
            return None
        return cls(
            cost_usd=_cost(value.get("cost_usd")),
            tokens_in=_count(value.get("tokens_in")),
            tokens_out=_count(value.get("tokens_out")),
        )


UsageReader = Callable[[Captured], Usage | None]


def claude_usage(captured: Captured) -> Usage | None:
    """Claude Code's result object: `total_cost_usd`, and `usage` with `input_tokens`,
    `cache_creation_input_tokens`, `cache_read_input_tokens` and `output_tokens`. With
    `--output-format stream-json` it is the stream's last `result` event (each assistant
    message's own `usage` is one API call's, not the run's); with `json`, the one object."""
    obj = _last_event(captured.stdout, "result") or last_json_object(captured.stdout)
    if obj is None:
        return None
    usage = obj.get("usage")
    tokens_in = tokens_out = None
    if isinstance(usage, Mapping):
        tokens_in = _total(
            usage.get(key)
            for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        tokens_out = _count(usage.get("output_tokens"))
    return _found(Usage(_cost(obj.get("total_cost_usd")), tokens_in, tokens_out))


def codex_usage(captured: Captured) -> Usage | None:
    """Codex `exec --json`: each `turn.completed` event carries `usage` with `input_tokens`
    (cached ones included, `cached_input_tokens` is a part of them) and `output_tokens`.
    Codex states no cost."""
    turns = [
        event["usage"]
        for event in json_lines(captured.stdout)
        if event.get("type") == "turn.completed" and isinstance(event.get("usage"), Mapping)
    ]
    if not turns:
        return None
    return _found(
        Usage(
            tokens_in=_total(turn.get("input_tokens") for turn in turns),
            tokens_out=_total(turn.get("output_tokens") for turn in turns),
        )
    )


def gemini_usage(captured: Captured) -> Usage | None:
    """Gemini CLI's token counts; it states no cost.

    `--output-format stream-json`: the `stats` of the last `result` event (an error result
    has them too), summed over models: `input_tokens` (the prompt, cached included) read,
    and the rest of `total_tokens` written — the answer (`output_tokens`) and the thinking
    and tool-use prompt tokens the stream counts in the total only, so that in + out is the
    CLI's own total. `--output-format json`: `stats.models.<model>.tokens`, `prompt` and
    `tool` read, `candidates` and `thoughts` written."""
    result = _last_event(captured.stdout, "result")
    if result is not None:
        return _gemini_stream_usage(result.get("stats"))
    obj = last_json_object(captured.stdout)
    models = dig(obj, "stats.models") if obj is not None else None
    if not isinstance(models, Mapping):
        return None
    tokens = [
        m["tokens"]
        for m in models.values()
        if isinstance(m, Mapping) and isinstance(m.get("tokens"), Mapping)
    ]
    if not tokens:
        return None
    return _found(
        Usage(
            tokens_in=_total(t.get(key) for t in tokens for key in ("prompt", "tool")),
            tokens_out=_total(t.get(key) for t in tokens for key in ("candidates", "thoughts")),
        )
    )


def _gemini_stream_usage(stats: Any) -> Usage | None:
    if not isinstance(stats, Mapping):
        return None
    tokens_in = _count(stats.get("input_tokens"))
    total = _count(stats.get("total_tokens"))
    if total is not None and tokens_in is not None and total >= tokens_in:
        tokens_out: int | None = total - tokens_in
    else:
        tokens_out = _count(stats.get("output_tokens"))
    return _found(Usage(tokens_in=tokens_in, tokens_out=tokens_out))


def opencode_usage(captured: Captured) -> Usage | None:
    """OpenCode `run --format json`: each `step_finish` event's `part` has `cost` (US dollars)
    and `tokens` {input, output, reasoning, cache: {read, write}}."""
    parts = [
        event["part"]
        for event in json_lines(captured.stdout)
        if event.get("type") == "step_finish" and isinstance(event.get("part"), Mapping)
    ]
    if not parts:
        return None
    tokens = [
        part.get("tokens") if isinstance(part.get("tokens"), Mapping) else {} for part in parts
    ]
    return _found(
        Usage(
            cost_usd=_sum_cost(part.get("cost") for part in parts),
            tokens_in=_total(
                dig(t, path) for t in tokens for path in ("input", "cache.read", "cache.write")
            ),
            tokens_out=_total(t.get(key) for t in tokens for key in ("output", "reasoning")),
        )
    )


def pi_usage(captured: Captured) -> Usage | None:
    """Pi in `--mode json` (the pi profile's mode): each assistant `message_end` event's
    `message.usage` has `input`, `output`, `cacheRead`, `cacheWrite` and `cost.total` (US
    dollars), one model call's; the run's is their sum (`agent_end` repeats the same
    messages, so it is not counted again). In print mode alone (`-p`, text: a profile of
    the user's own) pi prints only the answer: nothing to read, so None."""
    usages = [
        dig(event, "message.usage")
        for event in json_lines(captured.stdout)
        if event.get("type") == "message_end" and dig(event, "message.role") == "assistant"
    ]
    usages = [u for u in usages if isinstance(u, Mapping)]
    if not usages:
        return None
    return _found(
        Usage(
            cost_usd=_sum_cost(dig(u, "cost.total") for u in usages),
            tokens_in=_total(
                u.get(key) for u in usages for key in ("input", "cacheRead", "cacheWrite")
            ),
            tokens_out=_total(u.get("output") for u in usages),
        )
    )


# Profile name -> how its CLI reports what a run cost. The bundled demo agents print Claude
# Code's result shape. A profile not named here (the `command` profile, agy's plain text)
# is matched by its binary's name, else its cost is unknown.
USAGE_READERS: Final[Mapping[str, UsageReader]] = {
    "claude-code": claude_usage,
    "claude": claude_usage,
    "codex": codex_usage,
    "gemini": gemini_usage,
    "opencode": opencode_usage,
    "pi": pi_usage,
    "demo": claude_usage,
    "demo-automation": claude_usage,
    "demo-chat": claude_usage,
}


def usage_of(profile: str, program: str, captured: Captured) -> Usage | None:
    """What the run of `profile` (its binary `program`) cost, by its CLI's own report; None
    when the CLI reported nothing we can read. Never raises: the output is the CLI's."""
    reader = USAGE_READERS.get(profile) or USAGE_READERS.get(Path(program).name)
    return reader(captured) if reader is not None else None


def with_usage(reading: Reading, usage: Usage | None) -> Reading:
    """`reading` with `usage` as its `usage` detail. A profile's own `usage` detail (the raw
    object its CLI printed) is kept as `cli_usage`."""
    details = dict(reading.details)
    raw = details.pop("usage", None)
    if raw is not None:
        details["cli_usage"] = raw
    if usage is not None:
        details["usage"] = usage.as_detail()
    return replace(reading, details=details)


def _count(value: Any) -> int | None:
    """A token count the CLI printed, or None for anything that is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or not 0 <= value <= MAX_TOKENS or value != int(value):
        return None
    return int(value)


def _cost(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or not 0 <= value <= MAX_COST_USD:
        return None
    return float(value)


def _total(values: Iterable[Any]) -> int | None:
    """The sum of the counts among `values`; None when none of them is one."""
    counts = [count for value in values if (count := _count(value)) is not None]
    return min(sum(counts), MAX_TOKENS) if counts else None


def _sum_cost(values: Iterable[Any]) -> float | None:
    costs = [cost for value in values if (cost := _cost(value)) is not None]
    return min(math.fsum(costs), MAX_COST_USD) if costs else None


def _found(usage: Usage) -> Usage | None:
    return usage if usage != Usage() else None


def _last_event(text: str, event_type: str) -> dict[str, Any] | None:
    """The last JSON line of an event stream whose `type` is `event_type`; None if none is."""
    return next((e for e in reversed(json_lines(text)) if e.get("type") == event_type), None)


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


def uncut(text: str) -> str:
    """Stdout without the line that says it was cut at the cap."""
    return text.removesuffix(f"\n{TRUNCATED}")


def cap_words(cap: int) -> str:
    size = f"{cap // _MIB} MiB" if cap % _MIB == 0 else f"{cap}-byte"
    return f"{size} output cap ([executor] stdout_cap_bytes)"


def partial_object(text: str, start: int) -> tuple[dict[str, Any], str | None]:
    """The members of the JSON object at `text[start]` that the text holds before it ends:
    whole values, and the head of the string (or object) it ends inside. Also returns the
    dotted path of that member, None when the text ends between members."""
    members: dict[str, Any] = {}
    i = _skip_space(text, start + 1)
    while text.startswith('"', i):
        try:
            key, i = _decoder.raw_decode(text, i)
        except ValueError:
            return members, None  # the text ends inside a name
        i = _skip_space(text, i)
        if not text.startswith(":", i):
            return members, None
        i = _skip_space(text, i + 1)
        try:
            value, i = _decoder.raw_decode(text, i)
        except ValueError:
            head, inner = _partial_value(text, i)
            if head is not None:
                members[key] = head
            return members, key if inner is None else f"{key}.{inner}"
        members[key] = value
        i = _skip_space(text, i)
        if not text.startswith(",", i):
            break
        i = _skip_space(text, i + 1)
    return members, None


def _partial_value(text: str, start: int) -> tuple[Any, str | None]:
    if text.startswith('"', start):
        return _string_head(text[start + 1 :]), None
    if text.startswith("{", start):
        return partial_object(text, start)
    return None, None  # a number, list or literal cut short: nothing worth keeping


def _string_head(body: str) -> str:
    """The characters of a JSON string whose closing quote was cut off; an escape cut in
    the middle (at most `\\uXXXX`, 6 characters) is left out."""
    for drop in range(7):
        try:
            value = json.loads(f'"{body[: len(body) - drop]}"')
        except ValueError:
            continue
        return value if isinstance(value, str) else ""
    return ""


def _skip_space(text: str, i: int) -> int:
    match = _WHITESPACE.match(text, i)
    return match.end() if match else i


def _within(cut_in: str | None, path: str) -> bool:
    """Whether the member cut at `cut_in` is `path`, inside it, or holds it."""
    if cut_in is None:
        return False
    return cut_in == path or cut_in.startswith(f"{path}.") or path.startswith(f"{cut_in}.")


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
