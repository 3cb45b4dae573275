"""Loopback stand-ins for the model APIs the real CLIs call, scripted to use the Lobu tools.

Each stub speaks one wire format — Anthropic Messages (Claude Code), OpenAI
Responses (Codex), Gemini generateContent (Gemini CLI), OpenAI chat completions
(OpenCode, pi) — streamed as Server-Sent Events when the CLI asks for a stream.
What the "model" does is the same for all of them (`plan`), decided afresh from
each request, so no stub keeps a conversation of its own:

- a watcher run: call `query_sdk` (knowledge.read), then answer `WATCHER_ANSWER`;
- an automation run: call `query_sdk` (knowledge.read) and `run_sdk`
  (automations.completeWindow with the run id its prompt names), then answer
  `AUTOMATION_ANSWER`; with `FORGET` in the prompt the first round only answers
  (so the server asks for a resume round) and the nudged round completes.

A Lobu tool is found by the end of its name (`mcp__lobu__run_sdk`,
`lobu_run_sdk`, ...). Claude Code lists MCP tools only after its `ToolSearch`
tool loaded them, so the model searches first when that is what it is offered. A
CLI with no MCP client but a `bash` tool (pi) reaches the same tools through
`LOBU_MEMORY_URL` / `LOBU_API_TOKEN` with a small Python script. When neither is
offered the model answers "NO LOBU TOOL: ...", and when a Lobu tool's result is not
the dev server's answer to a successful call (the CLI refused it, say) it answers
"TOOL FAILED: <the result>": either way the run fails visibly, in its own words.

Every request is recorded (`Stub.requests`); nothing leaves the loopback interface.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

FORGET = "[[stub:forget]]"  # in an automation's prompt: round 1 does not complete the window
NUDGE = "FINALIZE NUDGE"
WATCHER_ANSWER = "Inbox digest: nothing new since the last window (checked with query_sdk)."
AUTOMATION_ANSWER = "Window completed through run_sdk."
FORGOT_ANSWER = "Here is a summary of the inbox, without completing the window."
LOBU_TOOLS = ("query_sdk", "run_sdk")
_RUN_ID = re.compile(r"completeWindow\(\{ run_id: (\d+),")
_AUTOMATION_ID = re.compile(r"knowledge\.read\(\{ automation_id: ([^,} ]+)")


# ----------------------------------------------------------------------- the model


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Text:
    text: str


Step = ToolCall | Text


def wanted_calls(prompt: str) -> list[tuple[str, dict[str, Any]]]:
    """The Lobu tool calls (tool, arguments) this prompt's run needs, in order."""
    read = ("query_sdk", {"method": "knowledge.read", "params": {}})
    run_id = _RUN_ID.search(prompt)
    if run_id is None:  # a watcher run, or a request of the CLI's own (a title, ...)
        return [read]
    automation = _AUTOMATION_ID.search(prompt)
    if automation is not None:
        read[1]["params"] = {"automation_id": automation.group(1).strip("'\"")}
    complete = (
        "run_sdk",
        {
            "method": "automations.completeWindow",
            "params": {"run_id": int(run_id.group(1)), "extracted_data": {"summary": "ok"}},
        },
    )
    if FORGET in prompt:
        return [complete] if NUDGE in prompt else []
    return [read, complete]


def plan(prompt: str, offered: list[str], calls: list[str], results: list[str | None]) -> Step:
    """The model's next step, from the run's prompt, the tools offered, the calls made so
    far and what they returned (`results`: the text of each finished call, in order)."""
    wanted = wanted_calls(prompt)
    done = [name for name in calls if _lobu_tool(name) or name == "bash"]
    failed = [
        text
        for name, text in zip(calls, results, strict=False)
        if (_lobu_tool(name) or name == "bash") and text is not None and not _succeeded(text)
    ]
    if failed:  # what the model would do: report the failure rather than pretend
        return Text(f"TOOL FAILED: {failed[0][:500]}")
    if len(done) < len(wanted):
        tool, arguments = wanted[len(done)]
        name = next((n for n in offered if _lobu_tool(n) == tool), None)
        if name is not None:
            return ToolCall(name, arguments)
        if "ToolSearch" in offered and "ToolSearch" not in calls:
            names = ",".join(f"mcp__lobu__{t}" for t in LOBU_TOOLS)
            return ToolCall("ToolSearch", {"query": f"select:{names}", "max_results": 2})
        if "bash" in offered:
            return ToolCall("bash", {"command": _script_for(tool, arguments)})
        return Text(f"NO LOBU TOOL: {tool} is not among the tools offered: {sorted(offered)}")
    if _RUN_ID.search(prompt) is None:
        return Text(WATCHER_ANSWER)
    return Text(AUTOMATION_ANSWER if wanted else FORGOT_ANSWER)


def _succeeded(result: str) -> bool:
    """Whether a Lobu tool's result is the dev server's answer to a successful call:
    knowledge.read answers `items`, completeWindow the window's `window_start`."""
    return "items" in result or "window_start" in result


def _lobu_tool(name: str) -> str | None:
    """`run_sdk` for `mcp__lobu__run_sdk`, `lobu_run_sdk`, `run_sdk`, ...; else None."""
    for tool in LOBU_TOOLS:
        if name == tool or (name.endswith("_" + tool) and "lobu" in name):
            return tool
    return None


def _script_for(tool: str, arguments: Mapping[str, Any]) -> str:
    """A shell command calling the Lobu MCP tool with the run's LOBU_* environment."""
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    script = (
        "import json, os, urllib.request as u\n"
        "r = u.Request(os.environ['LOBU_MEMORY_URL'], method='POST', data=json.dumps("
        f"{call!r}).encode(), headers={{'Content-Type': 'application/json', "
        "'Accept': 'application/json, text/event-stream', "
        "'Authorization': 'Bearer ' + os.environ['LOBU_API_TOKEN']})\n"
        "print(u.urlopen(r, timeout=30).read().decode())\n"
    )
    return f"python3 -c {shlex.quote(script)}"


# ----------------------------------------------------------------------- the server


@dataclass
class Seen:
    """One request a stub answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    step: dict[str, Any] | None = None  # what the model did, for requests it answered


@dataclass
class Stub:
    """A model API on 127.0.0.1: `url` is its origin; `requests` what it was sent."""

    api: ClassVar[str] = ""
    requests: list[Seen] = field(default_factory=list)
    url: str = ""
    on_request: Callable[[], None] | None = None  # called before each answer
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                stub._handle(self, "GET")

            def do_POST(self) -> None:
                stub._handle(self, "POST")

            def do_HEAD(self) -> None:
                stub._handle(self, "HEAD")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the requests are recorded instead

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def answered(self) -> list[Seen]:
        with self._lock:
            return [seen for seen in self.requests if seen.step is not None]

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in handler.headers.items()}
        seen = Seen(method, handler.path, headers, body)
        with self._lock:
            self.requests.append(seen)
        if self.on_request is not None:
            self.on_request()
        status, content_type, payload = self.respond(seen)
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload)))
        if content_type.startswith("text/event-stream"):
            handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        if method != "HEAD":
            handler.wfile.write(payload)

    def respond(self, seen: Seen) -> tuple[int, str, bytes]:
        raise NotImplementedError


def _json(status: int, value: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(value).encode()


def _sse(events: list[tuple[str | None, Any]]) -> tuple[int, str, bytes]:
    lines = []
    for name, data in events:
        if name is not None:
            lines.append(f"event: {name}")
        lines.append(f"data: {data if isinstance(data, str) else json.dumps(data)}")
        lines.append("")
    return 200, "text/event-stream", ("\n".join(lines) + "\n").encode()


def _step_record(step: Step, offered: list[str]) -> dict[str, Any]:
    if isinstance(step, ToolCall):
        return {"tool": step.name, "arguments": step.arguments, "offered": offered}
    return {"text": step.text, "offered": offered}


def _texts(value: Any) -> Iterator[str]:
    """Every string under "text" keys (and plain string contents) of a message list."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, dict):
        for key in ("text", "content", "parts"):
            if key in value:
                yield from _texts(value[key])


def _flat(value: Any) -> str:
    """A tool result's text, however the API nests it."""
    text = "\n".join(_texts(value))
    return text or json.dumps(value)


# ------------------------------------------------------------- Anthropic Messages


class AnthropicStub(Stub):
    """`POST /v1/messages` for Claude Code (ANTHROPIC_BASE_URL + ANTHROPIC_API_KEY)."""

    api = "anthropic"

    def respond(self, seen: Seen) -> tuple[int, str, bytes]:
        path = seen.path.split("?")[0]
        body = seen.body if isinstance(seen.body, dict) else {}
        if path.endswith("/count_tokens"):
            return _json(200, {"input_tokens": 100})
        if not path.endswith("/v1/messages") or seen.method != "POST":
            return _json(404, {"type": "error", "error": {"type": "not_found_error"}})
        messages = body.get("messages") or []
        prompt = "\n".join(
            text for m in messages if m.get("role") == "user" for text in _texts(m.get("content"))
        )
        offered = [t.get("name", "") for t in body.get("tools") or []]
        blocks = [
            block
            for m in messages
            if isinstance(m.get("content"), list)
            for block in m["content"]
            if isinstance(block, dict)
        ]
        uses = [b for b in blocks if b.get("type") == "tool_use"]
        outputs = {
            b.get("tool_use_id"): _flat(b.get("content"))
            for b in blocks
            if b.get("type") == "tool_result"
        }
        calls = [b.get("name", "") for b in uses]
        step = plan(prompt, offered, calls, [outputs.get(b.get("id")) for b in uses])
        seen.step = _step_record(step, offered)
        model = body.get("model", "claude-stub")
        number = len(self.requests)
        if isinstance(step, ToolCall):
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": f"toolu_stub{number}",
                "name": step.name,
                "input": step.arguments,
            }
            stop = "tool_use"
        else:
            block = {"type": "text", "text": step.text}
            stop = "end_turn"
        usage = {"input_tokens": 100, "output_tokens": 20}
        message = {
            "id": f"msg_stub{number}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [block],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            return _json(200, message)
        start = {**message, "content": [], "stop_reason": None}
        if block["type"] == "tool_use":
            opening = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(step.arguments)}  # type: ignore[union-attr]
        else:
            opening = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        return _sse(
            [
                ("message_start", {"type": "message_start", "message": start}),
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": 0, "content_block": opening},
                ),
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                ),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                (
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": stop, "stop_sequence": None},
                        "usage": {"output_tokens": 20},
                    },
                ),
                ("message_stop", {"type": "message_stop"}),
            ]
        )


# ---------------------------------------------------------------- OpenAI Responses


class ResponsesStub(Stub):
    """`POST /v1/responses` for Codex (a `model_provider` with `wire_api = "responses"`)."""

    api = "openai-responses"

    def respond(self, seen: Seen) -> tuple[int, str, bytes]:
        path = seen.path.split("?")[0]
        body = seen.body if isinstance(seen.body, dict) else {}
        if path.endswith("/models"):
            return _json(200, {"object": "list", "data": []})
        if not path.endswith("/responses") or seen.method != "POST":
            return _json(404, {"error": {"message": f"no {path} here"}})
        items = body.get("input") or []
        if isinstance(items, str):
            items = [{"type": "message", "role": "user", "content": items}]
        prompt = "\n".join(
            text
            for item in items
            if item.get("type", "message") == "message" and item.get("role") == "user"
            for text in _texts(item.get("content"))
        )
        # Codex offers an MCP server's tools in a namespace tool (`mcp__lobu`): a call
        # names the tool and its namespace.
        namespaces: dict[str, tuple[str, str]] = {}
        offered: list[str] = []
        for tool in body.get("tools") or []:
            if tool.get("type") == "namespace":
                for inner in tool.get("tools") or []:
                    full = f"{tool.get('name')}__{inner.get('name')}"
                    namespaces[full] = (str(tool.get("name")), str(inner.get("name")))
                    offered.append(full)
            else:
                offered.append(_responses_tool_name(tool))
        uses = [item for item in items if item.get("type") == "function_call"]
        outputs = {
            item.get("call_id"): _flat(item.get("output"))
            for item in items
            if item.get("type") == "function_call_output"
        }
        calls = [
            f"{item['namespace']}__{item.get('name')}"
            if item.get("namespace")
            else item.get("name", "")
            for item in uses
        ]
        step = plan(prompt, offered, calls, [outputs.get(item.get("call_id")) for item in uses])
        seen.step = _step_record(step, offered)
        number = len(self.requests)
        if isinstance(step, ToolCall):
            item: dict[str, Any] = {
                "type": "function_call",
                "id": f"fc_stub{number}",
                "call_id": f"call_stub{number}",
                "name": step.name,
                "arguments": json.dumps(step.arguments),
                "status": "completed",
            }
            if step.name in namespaces:
                item["namespace"], item["name"] = namespaces[step.name]
        else:
            item = {
                "type": "message",
                "id": f"msg_stub{number}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": step.text, "annotations": []}],
            }
        response = {
            "id": f"resp_stub{number}",
            "object": "response",
            "created_at": 0,
            "model": body.get("model", "gpt-stub"),
            "status": "completed",
            "output": [item],
            "usage": {
                "input_tokens": 100,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 20,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 120,
            },
        }
        if not body.get("stream"):
            return _json(200, response)
        created = {**response, "status": "in_progress", "output": []}
        events: list[tuple[str | None, Any]] = [
            ("response.created", {"type": "response.created", "response": created}),
            (
                "response.output_item.added",
                {"type": "response.output_item.added", "output_index": 0, "item": item},
            ),
        ]
        if isinstance(step, Text):
            events.append(
                (
                    "response.output_text.delta",
                    {
                        "type": "response.output_text.delta",
                        "item_id": item["id"],
                        "output_index": 0,
                        "content_index": 0,
                        "delta": step.text,
                    },
                )
            )
        events += [
            (
                "response.output_item.done",
                {"type": "response.output_item.done", "output_index": 0, "item": item},
            ),
            ("response.completed", {"type": "response.completed", "response": response}),
        ]
        return _sse(events)


def _responses_tool_name(tool: Mapping[str, Any]) -> str:
    name = tool.get("name")
    if isinstance(name, str):
        return name
    function = tool.get("function")
    if isinstance(function, Mapping) and isinstance(function.get("name"), str):
        return str(function["name"])
    return str(tool.get("type", ""))


# ------------------------------------------------------------------------- Gemini


class GeminiStub(Stub):
    """`POST /v1beta/models/<model>:generateContent` and `:streamGenerateContent?alt=sse`
    for Gemini CLI (GEMINI_API_KEY + GOOGLE_GEMINI_BASE_URL)."""

    api = "gemini"

    def respond(self, seen: Seen) -> tuple[int, str, bytes]:
        path = seen.path.split("?")[0]
        body = seen.body if isinstance(seen.body, dict) else {}
        if path.endswith(":countTokens"):
            return _json(200, {"totalTokens": 100})
        if seen.method != "POST" or not (
            path.endswith(":generateContent") or path.endswith(":streamGenerateContent")
        ):
            return _json(404, {"error": {"code": 404, "message": f"no {path} here"}})
        config = body.get("generationConfig") or {}
        if config.get("responseMimeType") == "application/json" or config.get("responseSchema"):
            # One of the CLI's own structured side questions (routing, next speaker, ...).
            seen.step = {"json": True}
            answer = _json_side_answer(config)
            return self._answer(path, [{"text": json.dumps(answer)}])
        contents = body.get("contents") or []
        prompt = "\n".join(
            part["text"]
            for c in contents
            if c.get("role") == "user"
            for part in c.get("parts") or []
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
        offered = [
            d.get("name", "")
            for tool in body.get("tools") or []
            for d in tool.get("functionDeclarations") or []
        ]
        parts = [part for c in contents for part in c.get("parts") or [] if isinstance(part, dict)]
        calls = [
            part["functionCall"].get("name", "")
            for part in parts
            if isinstance(part.get("functionCall"), dict)
        ]
        outputs: list[str | None] = [
            json.dumps(part["functionResponse"].get("response"))
            for part in parts
            if isinstance(part.get("functionResponse"), dict)
        ]
        step = plan(prompt, offered, calls, outputs + [None] * (len(calls) - len(outputs)))
        seen.step = _step_record(step, offered)
        if isinstance(step, ToolCall):
            part: dict[str, Any] = {"functionCall": {"name": step.name, "args": step.arguments}}
        else:
            part = {"text": step.text}
        return self._answer(path, [part])

    def _answer(self, path: str, parts: list[dict[str, Any]]) -> tuple[int, str, bytes]:
        response = {
            "candidates": [
                {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {
                "promptTokenCount": 100,
                "candidatesTokenCount": 20,
                "totalTokenCount": 120,
            },
            "modelVersion": "gemini-stub",
        }
        if path.endswith(":streamGenerateContent"):
            return _sse([(None, response)])
        return _json(200, response)


def _json_side_answer(config: Mapping[str, Any]) -> dict[str, Any]:
    """A plausible answer to a structured side question, from its schema's properties."""
    schema = config.get("responseSchema") or config.get("responseJsonSchema") or {}
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    answer: dict[str, Any] = {}
    for name, spec in (properties or {}).items():
        kind = spec.get("type", "string") if isinstance(spec, Mapping) else "string"
        options = spec.get("enum") if isinstance(spec, Mapping) else None
        if name == "next_speaker":
            answer[name] = "user"
        elif options:
            answer[name] = options[0]
        elif str(kind).lower() in ("boolean",):
            answer[name] = False
        elif str(kind).lower() in ("number", "integer"):
            answer[name] = 0
        else:
            answer[name] = "stub"
    return answer


# ------------------------------------------------------------- chat completions


class ChatCompletionsStub(Stub):
    """`POST /v1/chat/completions` (OpenAI-compatible) for OpenCode and pi."""

    api = "openai-chat"

    def respond(self, seen: Seen) -> tuple[int, str, bytes]:
        path = seen.path.split("?")[0]
        body = seen.body if isinstance(seen.body, dict) else {}
        if path.endswith("/models"):
            return _json(200, {"object": "list", "data": [{"id": "stub-model", "object": "model"}]})
        if not path.endswith("/chat/completions") or seen.method != "POST":
            return _json(404, {"error": {"message": f"no {path} here"}})
        messages = body.get("messages") or []
        prompt = "\n".join(
            text for m in messages if m.get("role") == "user" for text in _texts(m.get("content"))
        )
        offered = [(t.get("function") or {}).get("name", "") for t in body.get("tools") or []]
        uses = [
            call
            for m in messages
            if m.get("role") == "assistant"
            for call in m.get("tool_calls") or []
        ]
        outputs = {
            m.get("tool_call_id"): _flat(m.get("content"))
            for m in messages
            if m.get("role") == "tool"
        }
        calls = [(call.get("function") or {}).get("name", "") for call in uses]
        step = plan(prompt, offered, calls, [outputs.get(call.get("id")) for call in uses])
        seen.step = _step_record(step, offered)
        number = len(self.requests)
        if isinstance(step, ToolCall):
            call = {
                "index": 0,
                "id": f"call_stub{number}",
                "type": "function",
                "function": {"name": step.name, "arguments": json.dumps(step.arguments)},
            }
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": step.text}
            finish = "stop"
        usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
        base = {
            "id": f"chatcmpl-stub{number}",
            "created": 0,
            "model": body.get("model", "stub-model"),
        }
        if not body.get("stream"):
            choice = {"index": 0, "message": message, "finish_reason": finish}
            return _json(
                200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        chunk = {**base, "object": "chat.completion.chunk"}
        return _sse(
            [
                (
                    None,
                    {**chunk, "choices": [{"index": 0, "delta": message, "finish_reason": None}]},
                ),
                (
                    None,
                    {
                        **chunk,
                        "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
                        "usage": usage,
                    },
                ),
                (None, "[DONE]"),
            ]
        )


STUBS: dict[str, type[Stub]] = {
    stub.api: stub for stub in (AnthropicStub, ResponsesStub, GeminiStub, ChatCompletionsStub)
}
