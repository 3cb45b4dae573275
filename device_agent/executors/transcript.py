"""The transcript of a run: what the agent did, read from its CLI's own event stream, as JSONL.

A Lobu server shows, for each automation run, the transcript the device uploaded
after the run's final exit report (docs/protocol.md, "Transcript of an automation
run"). Its shape is the one the upstream device daemon writes:

    {"type":"session","version":3,"id":<session>,"timestamp":<ISO>,"cwd":<cwd>}
    {"type":"message","id":"acp-1","parentId":null,"timestamp":<ISO>,
     "message":{"role":"user","content":[{"type":"text","text":<prompt>}]}}
    ... then, in the order the CLI did them, its text (`role: "assistant"`,
    `{"type":"text"}`), its tool calls (`role: "assistant"`, `{"type":"tool_use","id",
    "name","input"}`) and their results (`role: "toolResult"`, `{"type":"tool_result",
    "tool_use_id","is_error","content":[{"type":"text","text"}]}`); the round's token usage
    on its last assistant text as `message.usage = {inputTokens, outputTokens}`.

`read_round` turns one CLI round into a `Round`, from the stream shape its profile names
(`[output] transcript`): Claude Code `--output-format stream-json --verbose`, Codex
`exec --json`, Gemini CLI `--output-format stream-json`, OpenCode `run --format json`, pi
`--mode json` — or, for a CLI with no such stream (`text`), its answer. Model "thinking"
is left out. `Transcript` puts the rounds of one run together:

- each round only appends lines, so every round's JSONL extends the previous one byte for
  byte (the server refuses, with 409, a snapshot that does not extend the one it has);
- every string is cleaned before it is written: NULs removed, lone surrogates replaced,
  then the caller's redaction (the log's: known secrets and token shapes);
- a value whose JSON is over 64 KiB is cut to its first 65,536 characters plus
  `…[truncated]` (a string: its own characters; a tool's input: its JSON);
- the whole stays within the server's 4 MiB, measured as it travels inside the upload's
  JSON body: a round that would not fit has its largest values cut first — never the
  header nor a prompt — and, should that not do, its last entries left out.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from device_agent.executors.readers import Usage, dig, json_lines
from device_agent.textsafe import encodable

FORMATS: Final = ("text", "claude-code", "codex", "gemini", "opencode", "pi")
VALUE_CAP: Final = 65_536  # characters of a value's JSON, and what is kept of a longer one
TRUNCATED: Final = "…[truncated]"
LIMIT: Final = 4 * 1024 * 1024  # the server refuses a larger snapshot with 413
# Room for the rest of the upload's body around the JSONL: {"runId":…,"terminalStatus":…}.
BODY_ROOM: Final = 256
VERSION: Final = 3
ID_PREFIX: Final = "acp-"


# ------------------------------------------------------------------ one round


@dataclass(frozen=True)
class Text:
    """Text the agent wrote."""

    text: str


@dataclass(frozen=True)
class ToolUse:
    """A tool the agent called, with what it passed."""

    id: str
    name: str
    input: Any


@dataclass(frozen=True)
class ToolResult:
    """What a tool call returned."""

    tool_use_id: str
    text: str
    is_error: bool = False


Step = Text | ToolUse | ToolResult


@dataclass(frozen=True)
class Round:
    """One CLI round of a run: the prompt it was sent, and what it did, in order."""

    prompt: str
    steps: tuple[Step, ...] = ()
    usage: Usage | None = None
    session_id: str | None = None  # the CLI's own session, when it names one
    cwd: str = ""
    started_at: float = 0.0  # epoch seconds
    finished_at: float = 0.0

    def redacted(self, redact: Callable[[str], str]) -> Round:
        """This round with `redact` applied to every string in it."""
        return dataclasses.replace(
            self,
            prompt=redact(self.prompt),
            steps=tuple(_redact_step(step, redact) for step in self.steps),
            session_id=redact(self.session_id) if self.session_id is not None else None,
            cwd=redact(self.cwd),
        )


def read_round(
    shape: str,
    stdout: str,
    *,
    prompt: str,
    answer: str,
    cwd: str,
    started_at: float,
    finished_at: float,
    usage: Usage | None = None,
) -> Round:
    """The round a CLI printed `stdout` for, read as stream `shape` (one of `FORMATS`).

    `answer` is the run's output as its reader read it: the transcript of a CLI without an
    event stream, and of one whose stream held nothing to show. `usage` is what the round
    cost as `readers.usage_of` read it: the transcript shows the tokens the journal counts."""
    reader = _READERS.get(shape)
    steps: list[Step] = []
    session: str | None = None
    if reader is not None:
        steps, session = reader(json_lines(stdout))
    if not steps and answer.strip():
        steps = [Text(answer)]
    return Round(
        prompt=prompt,
        steps=tuple(steps),
        usage=usage,
        session_id=session,
        cwd=cwd,
        started_at=started_at,
        finished_at=finished_at,
    )


Events = list[dict[str, Any]]
Read = tuple[list[Step], str | None]  # the steps, and the CLI's session id


def _claude_code(events: Events) -> Read:
    """`claude -p --output-format stream-json --verbose`: `assistant` messages (text,
    tool_use, thinking blocks), `user` messages carrying tool_result blocks, a `result`."""
    steps: list[Step] = []
    session: str | None = None
    for event in events:
        kind = event.get("type")
        session = _string(event.get("session_id")) or session
        if kind == "assistant":
            for block in _blocks(dig(event, "message.content")):
                if block.get("type") == "text" and _string(block.get("text")):
                    steps.append(Text(str(block["text"])))
                elif block.get("type") == "tool_use":
                    steps.append(_tool_use(block.get("id"), block.get("name"), block.get("input")))
        elif kind == "user":
            for block in _blocks(dig(event, "message.content")):
                if block.get("type") == "tool_result":
                    steps.append(
                        ToolResult(
                            str(block.get("tool_use_id") or ""),
                            _flat(block.get("content")),
                            block.get("is_error") is True,
                        )
                    )
    return steps, session


def _codex(events: Events) -> Read:
    """`codex exec --json`: `item.completed` events (agent_message, reasoning,
    mcp_tool_call, command_execution, file_change, …) and `turn.completed` with usage."""
    steps: list[Step] = []
    session: str | None = None
    for event in events:
        kind = event.get("type")
        if kind == "thread.started":
            session = _string(event.get("thread_id")) or session
        elif kind == "item.completed" and isinstance(event.get("item"), Mapping):
            steps += _codex_item(event["item"])
    return steps, session


def _codex_item(item: Mapping[str, Any]) -> list[Step]:
    kind = item.get("type")
    ident = str(item.get("id") or "")
    status = item.get("status")
    if kind == "agent_message":
        return [Text(str(item["text"]))] if _string(item.get("text")) else []
    if kind in ("reasoning", "error"):  # thinking, and the CLI's own warnings
        return []
    if kind == "mcp_tool_call":
        name = f"mcp__{item.get('server')}__{item.get('tool')}"
        error = dig(item, "error.message")
        if isinstance(error, str):
            result = ToolResult(ident, error, True)
        else:
            result = ToolResult(ident, _flat(dig(item, "result.content")), status == "failed")
        return [_tool_use(ident, name, item.get("arguments")), result]
    if kind == "command_execution":
        code = item.get("exit_code")
        failed = status == "failed" or (isinstance(code, int) and code != 0)
        output = item.get("aggregated_output")
        return [
            _tool_use(ident, "shell", {"command": item.get("command")}),
            ToolResult(ident, output if isinstance(output, str) else "", failed),
        ]
    fields = {k: v for k, v in item.items() if k not in ("id", "type", "status")}
    steps: list[Step] = [_tool_use(ident, str(kind), fields)]
    if isinstance(status, str):
        steps.append(ToolResult(ident, status, status == "failed"))
    return steps


def _gemini(events: Events) -> Read:
    """`gemini --output-format stream-json`: `message` events (the assistant's streamed in
    `delta` pieces), `tool_use`, `tool_result`, and a `result` with stats."""
    steps: list[Step] = []
    session: str | None = None
    joining = False  # the last step is a streamed message still arriving
    for event in events:
        kind = event.get("type")
        streamed = False
        if kind == "init":
            session = _string(event.get("session_id")) or session
        elif kind == "message" and event.get("role") == "assistant":
            text = _string(event.get("content"))
            streamed = event.get("delta") is True
            if text and joining and streamed and isinstance(steps[-1], Text):
                steps[-1] = Text(steps[-1].text + text)
            elif text:
                steps.append(Text(text))
        elif kind == "tool_use":
            steps.append(
                _tool_use(event.get("tool_id"), event.get("tool_name"), event.get("parameters"))
            )
        elif kind == "tool_result":
            output = event.get("output")
            if not isinstance(output, str):
                output = _string(dig(event, "error.message")) or ""
            failed = event.get("status") == "error"
            steps.append(ToolResult(str(event.get("tool_id") or ""), output, failed))
        joining = streamed
    return steps, session


def _opencode(events: Events) -> Read:
    """`opencode run --format json`: `text` and `tool_use` parts (a tool_use carries its
    input and its output), `step_finish` with each step's tokens."""
    steps: list[Step] = []
    session: str | None = None
    for event in events:
        session = _string(event.get("sessionID")) or session
        part = event.get("part")
        part = part if isinstance(part, Mapping) else {}
        kind = event.get("type")
        if kind == "text" and _string(part.get("text")):
            steps.append(Text(str(part["text"])))
        elif kind == "tool_use":
            ident = str(part.get("callID") or part.get("id") or "")
            state = part.get("state")
            state = state if isinstance(state, Mapping) else {}
            output = state.get("output")
            if not isinstance(output, str):
                output = _string(state.get("error")) or ""
            steps.append(_tool_use(ident, part.get("tool"), state.get("input")))
            steps.append(ToolResult(ident, output, state.get("status") == "error"))
    return steps, session


def _pi(events: Events) -> Read:
    """`pi --mode json`: the session header, then whole messages in `message_end` events —
    the assistant's (text, toolCall and thinking blocks, usage) and each `toolResult`."""
    steps: list[Step] = []
    session: str | None = None
    for event in events:
        kind = event.get("type")
        if kind == "session":
            session = _string(event.get("id")) or session
        if kind != "message_end" or not isinstance(event.get("message"), Mapping):
            continue
        message = event["message"]
        if message.get("role") == "assistant":
            for block in _blocks(message.get("content")):
                if block.get("type") == "text" and _string(block.get("text")):
                    steps.append(Text(str(block["text"])))
                elif block.get("type") == "toolCall":
                    steps.append(
                        _tool_use(block.get("id"), block.get("name"), block.get("arguments"))
                    )
        elif message.get("role") == "toolResult":
            steps.append(
                ToolResult(
                    str(message.get("toolCallId") or ""),
                    _flat(message.get("content")),
                    message.get("isError") is True,
                )
            )
    return steps, session


_READERS: Final[Mapping[str, Callable[[Events], Read]]] = {
    "claude-code": _claude_code,
    "codex": _codex,
    "gemini": _gemini,
    "opencode": _opencode,
    "pi": _pi,
}


def _tool_use(ident: Any, name: Any, arguments: Any) -> ToolUse:
    return ToolUse(str(ident or ""), str(name or ""), arguments if arguments is not None else {})


def _blocks(content: Any) -> Iterable[Mapping[str, Any]]:
    return (
        (block for block in content if isinstance(block, Mapping))
        if isinstance(content, list)
        else ()
    )


def _flat(content: Any) -> str:
    """A tool result's content as text: a string, or its text blocks joined by line breaks
    (any other block as its JSON)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return "" if content is None else _dumps(content)
    parts = []
    for block in content:
        if isinstance(block, Mapping) and block.get("type") == "text":
            parts.append(str(block.get("text") or ""))
        elif isinstance(block, str):
            parts.append(block)
        else:
            parts.append(_dumps(block))
    return "\n".join(parts)


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _redact_step(step: Step, redact: Callable[[str], str]) -> Step:
    if isinstance(step, Text):
        return Text(redact(step.text))
    if isinstance(step, ToolUse):
        return ToolUse(redact(step.id), redact(step.name), _deep(step.input, redact))
    return ToolResult(redact(step.tool_use_id), redact(step.text), step.is_error)


def _deep(value: Any, redact: Callable[[str], str]) -> Any:
    """`value` with `redact` applied to its strings; a string under a key is redacted with its
    key, so that a token-shaped pair (`"token": "…"`) is caught as in a log line."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact(str(k)): _keyed(str(k), v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deep(item, redact) for item in value]
    return value


def _keyed(key: str, value: Any, redact: Callable[[str], str]) -> Any:
    if not isinstance(value, str):
        return _deep(value, redact)
    said = redact(f"{key}={value}")
    prefix = f"{key}="
    return said[len(prefix) :] if said.startswith(prefix) else redact(value)


# ------------------------------------------------------------------ the run's JSONL


class Transcript:
    """The transcript of one run, a round at a time; `jsonl()` is what is uploaded and kept.

    `redact` is applied to every string written (after NULs are removed and lone surrogates
    replaced); `fallback_id` names the session when no round's CLI named one."""

    def __init__(
        self,
        *,
        redact: Callable[[str], str] = lambda text: text,
        fallback_id: str = "",
        limit: int = LIMIT,
    ) -> None:
        self._redact = redact
        self._fallback_id = fallback_id
        self._budget = limit - BODY_ROOM
        self._lines: list[str] = []
        self._size = 0  # of the lines as they travel in the upload's JSON body
        self._count = 0  # entries written: the next id is acp-<count + 1>
        self._last_id: str | None = None
        self.rounds = 0

    def jsonl(self) -> str:
        return "".join(self._lines)

    @property
    def entries(self) -> int:
        return self._count

    def add(self, round_: Round) -> None:
        """Append `round_`: the JSONL so far is left as it is, byte for byte."""
        if not self._lines:
            header = {
                "type": "session",
                "version": VERSION,
                "id": self._clean(round_.session_id or self._fallback_id),
                "timestamp": iso(round_.started_at),
                "cwd": self._clean(round_.cwd),
            }
            self._append(_line(header))
        entries = [self._user(round_)] + [self._entry(step, round_) for step in round_.steps]
        self._attach_usage(entries, round_.usage)
        for line in self._fitted(entries):
            self._append(line)
        self._count += len(entries)
        self._last_id = f"{ID_PREFIX}{self._count}"
        self.rounds += 1

    def _append(self, line: str) -> None:
        self._lines.append(line)
        self._size += _wire(line)

    # ---------------------------------------------------------- entries

    def _user(self, round_: Round) -> _Entry:
        block = {"type": "text", "text": _capped(self._clean(round_.prompt))}
        return _Entry({"role": "user", "content": [block]}, round_.started_at)

    def _entry(self, step: Step, round_: Round) -> _Entry:
        at = round_.finished_at
        if isinstance(step, Text):
            block: dict[str, Any] = {"type": "text", "text": _capped(self._clean(step.text))}
            return _Entry({"role": "assistant", "content": [block]}, at, (block, "text"))
        if isinstance(step, ToolUse):
            block = {
                "type": "tool_use",
                "id": self._clean(step.id),
                "name": self._clean(step.name),
                "input": _capped(self._value(step.input)),
            }
            return _Entry({"role": "assistant", "content": [block]}, at, (block, "input"))
        text = {"type": "text", "text": _capped(self._clean(step.text))}
        block = {
            "type": "tool_result",
            "tool_use_id": self._clean(step.tool_use_id),
            "is_error": step.is_error,
            "content": [text],
        }
        return _Entry({"role": "toolResult", "content": [block]}, at, (text, "text"))

    @staticmethod
    def _attach_usage(entries: list[_Entry], usage: Usage | None) -> None:
        """The round's usage goes on its last assistant text (none: nowhere), with the
        counts the CLI reported (one it did not report is left out, never guessed)."""
        counts = (
            {}
            if usage is None
            else {
                "inputTokens": usage.tokens_in,
                "outputTokens": usage.tokens_out,
            }
        )
        counts = {key: value for key, value in counts.items() if value is not None}
        if not counts:
            return
        for entry in reversed(entries):
            content = entry.message["content"]
            if entry.message["role"] == "assistant" and content[0]["type"] == "text":
                entry.message["usage"] = counts
                return

    def _fitted(self, entries: list[_Entry]) -> list[str]:
        """The round's lines, made to fit what is left of the limit: the largest values are
        cut first; should that not do, the last entries are left out. Never the prompt."""
        room = self._budget - self._size
        lines = [self._written(index, entry) for index, entry in enumerate(entries)]
        total = sum(size for _, size in lines)
        largest = [(-entry.value_size(), index) for index, entry in enumerate(entries)]
        heapq.heapify(largest)
        while total > room:
            if largest:
                _, index = heapq.heappop(largest)
                entry = entries[index]
                if not entry.cuttable():
                    continue
                entry.cut(total - room)
                total -= lines[index][1]
                lines[index] = self._written(index, entry)
                total += lines[index][1]
                if entry.cuttable():
                    heapq.heappush(largest, (-entry.value_size(), index))
            elif len(entries) > 1:
                entries.pop()  # never the first: the prompt
                total -= lines.pop()[1]
            else:
                break  # the prompt alone: it is sent whole, and the server decides
        return [line for line, _ in lines]

    def _written(self, index: int, entry: _Entry) -> tuple[str, int]:
        """Entry `index` of the round being added, as a line, and its size on the wire."""
        number = self._count + 1 + index
        previous = self._last_id if index == 0 else f"{ID_PREFIX}{number - 1}"
        line = _line(
            {
                "type": "message",
                "id": f"{ID_PREFIX}{number}",
                "parentId": previous,
                "timestamp": iso(entry.at),
                "message": entry.message,
            }
        )
        return line, _wire(line)

    # ------------------------------------------------------------ values

    def _clean(self, text: str) -> str:
        """Text as it may be written: no NUL, no lone surrogate, then redacted."""
        return self._redact(_storable(text))

    def _value(self, value: Any) -> Any:
        """A JSON value (a tool's input) as it may be written."""
        if isinstance(value, str):
            return self._clean(value)
        if isinstance(value, Mapping):
            return {self._clean(str(k)): self._keyed(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._value(item) for item in value]
        if isinstance(value, float) and not math.isfinite(value):
            return None  # JSON has no such number
        if value is None or isinstance(value, bool | int | float):
            return value
        return self._clean(str(value))

    def _keyed(self, key: str, value: Any) -> Any:
        """A value under `key`: a string is redacted together with its key, so that a
        token-shaped pair (`token=…`) is caught as it is in a log line."""
        if not isinstance(value, str):
            return self._value(value)
        prefix = f"{_storable(key)}="
        said = self._redact(prefix + _storable(value))
        return said[len(prefix) :] if said.startswith(prefix) else self._clean(value)


class _Entry:
    """One message of a round before it is written, and the one value of it that may be cut
    to make the round fit (none for the prompt)."""

    def __init__(
        self, message: dict[str, Any], at: float, value: tuple[dict[str, Any], str] | None = None
    ) -> None:
        self.message = message
        self.at = at
        self._value = value
        self._emptied = False

    def cuttable(self) -> bool:
        return self._value is not None and not self._emptied

    def value_size(self) -> int:
        if self._value is None:
            return 0
        holder, key = self._value
        return _wire(_dumps(holder[key]))

    def cut(self, over: int) -> None:
        """Cut the value by at least `over` bytes on the wire — all of it, if that is not
        enough — and mark it `…[truncated]`."""
        assert self._value is not None
        holder, key = self._value
        value = holder[key]
        text = value if isinstance(value, str) else _dumps(value)
        if text.endswith(TRUNCATED):
            text = text[: -len(TRUNCATED)]
        # A character is a byte or more: cutting `over` characters and the mark's bytes frees
        # at least `over` bytes once the mark is added.
        keep = max(0, len(text) - over - len(TRUNCATED.encode("utf-8")))
        holder[key] = text[:keep] + TRUNCATED
        self._emptied = keep == 0


def iso(epoch: float) -> str:
    """Epoch seconds as JavaScript's `toISOString()` writes them: `2026-05-18T10:00:00.000Z`."""
    stamp = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _capped(value: Any) -> Any:
    """A value whose JSON is over 64 KiB, cut to its first 65,536 characters and
    `…[truncated]`: a string's own characters, another value's JSON (a tool's input). A
    string its quotes and escapes alone take over the cap is left whole: cutting it to
    65,536 characters would cut nothing."""
    if isinstance(value, str):
        return value[:VALUE_CAP] + TRUNCATED if len(value) > VALUE_CAP else value
    text = _dumps(value)
    return text[:VALUE_CAP] + TRUNCATED if len(text) > VALUE_CAP else value


def _storable(text: str) -> str:
    """No NUL (removed) and no lone surrogate (replaced): what UTF-8 and the server hold."""
    return encodable(text.replace("\x00", ""))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _line(value: Any) -> str:
    return _dumps(value) + "\n"


def _wire(text: str) -> int:
    """Bytes `text` takes inside a JSON string of the upload's body (escapes included)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8")) - 2
