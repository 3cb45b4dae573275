"""An offline stand-in for a CLI coding agent in the automation lane, for `device-agent demo`.

Run as `python -m device_agent.demo.automation_cli` (executors/demo-automation.toml).
It reads the prompt on stdin, calls no model, and behaves like a real agent
would toward the completion contract (docs/protocol.md, "Automation lane"):

- a window run: it calls `completeWindow` with the run id from the contract,
  through the Lobu MCP server it was given (`LOBU_MEMORY_URL`, `LOBU_API_TOKEN`
  — in the demo, the dev server's MCP stand-in);
- unless the automation's own text contains "needs a nudge": then the first
  round only prints a summary (as real agents sometimes do) and it finalizes
  on the round that carries the FINALIZE NUDGE section;
- an event turn: it replies and never calls completeWindow.

It prints what it does as Claude Code's `--output-format stream-json --verbose`
does — each tool call and its result, its answer, then the `result` object — so
the demo exercises the same reader, and shows the same transcript, as a real run.
It only ever talks to a loopback address: the demo stays offline.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import sys
import urllib.error
import urllib.request
import uuid
from typing import Any, Final
from urllib.parse import urlsplit

NEEDS_NUDGE: Final = "needs a nudge"
NUDGE_HEADING: Final = "FINALIZE NUDGE (prior attempt did not complete the window):"
TURN_CONTRACT: Final = "Completion contract (required): this is a conversational turn"
_RUN_ID: Final = re.compile(r"completeWindow\(\{ run_id: (\d+),")
_AUTOMATION: Final = re.compile(r"^Automation: (.*)$", re.M)
HTTP_TIMEOUT_SECONDS: Final = 10.0


class DemoError(Exception):
    """Why the demo agent could not do its part; printed as the run's error."""


def call_lobu_tool(name: str, arguments: dict[str, Any]) -> Any:
    """Call one Lobu MCP tool: the single place that speaks to the server.

    Assumes the dev server's MCP stand-in: `POST <LOBU_MEMORY_URL>` with
    `Authorization: Bearer <LOBU_API_TOKEN>` and a JSON-RPC 2.0 `tools/call` body.
    """
    url = os.environ.get("LOBU_MEMORY_URL", "")
    token = os.environ.get("LOBU_API_TOKEN", "")
    if not url or not token:
        raise DemoError("no Lobu session: LOBU_MEMORY_URL and LOBU_API_TOKEN are not set")
    _require_loopback(url)
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }
    request = urllib.request.Request(  # noqa: S310 - the URL is checked to be loopback http(s)
        url,
        data=json.dumps(body).encode("utf-8"),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
            answer = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise DemoError(f"the Lobu MCP server answered {exc.code} to {name}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DemoError(f"could not call {name} on the Lobu MCP server: {exc}") from None
    if not isinstance(answer, dict) or "error" in answer:
        error = answer.get("error") if isinstance(answer, dict) else answer
        raise DemoError(f"{name} failed: {error}")
    return answer.get("result")


def _require_loopback(url: str) -> None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme not in ("http", "https") or not loopback:
        raise DemoError(f"the demo agent only talks to a loopback server, not {url!r}")


class Stream:
    """Claude Code's stream-json events for what the demo agent does, printed as it goes."""

    def __init__(self) -> None:
        self.session_id = f"demo-{uuid.uuid4()}"
        self._calls = 0

    def emit(self, event: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps({**event, "session_id": self.session_id}) + "\n")
        sys.stdout.flush()

    def say(self, text: str) -> None:
        content = [{"type": "text", "text": text}]
        self.emit({"type": "assistant", "message": {"role": "assistant", "content": content}})

    def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """Call a Lobu tool, and print the call and its result as Claude Code does."""
        self._calls += 1
        ident = f"toolu_demo{self._calls}"
        use = {"type": "tool_use", "id": ident, "name": f"mcp__lobu__{name}", "input": arguments}
        self.emit({"type": "assistant", "message": {"role": "assistant", "content": [use]}})
        try:
            result = call_lobu_tool(name, arguments)
        except DemoError as exc:
            self._result(ident, [{"type": "text", "text": str(exc)}], failed=True)
            raise
        content = result.get("content") if isinstance(result, dict) else None
        self._result(ident, content if isinstance(content, list) else [], failed=False)
        return result

    def _result(self, ident: str, content: list[Any], *, failed: bool) -> None:
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": ident, "content": content}
        if failed:
            block["is_error"] = True
        self.emit({"type": "user", "message": {"role": "user", "content": [block]}})


def complete_window(stream: Stream, run_id: int, summary: str) -> None:
    params = {"run_id": run_id, "extracted_data": {"summary": summary}}
    stream.call("run_sdk", {"method": "automations.completeWindow", "params": params})


def act(prompt: str, stream: Stream) -> str:
    """Do what the prompt's contract asks; return the answer text. Raises `DemoError`."""
    name_match = _AUTOMATION.search(prompt)
    name = name_match.group(1) if name_match else "this automation"
    if TURN_CONTRACT in prompt:
        return f"Replied for {name}. This answer comes from the offline demo agent."
    run_match = _RUN_ID.search(prompt)
    if run_match is None:
        raise DemoError("the prompt has no completion contract with a run id")
    run_id = int(run_match.group(1))
    instructions = prompt.split("\n---\n", 1)[0]
    nudged = NUDGE_HEADING in prompt
    summary = f"Nothing needs your attention for {name} (offline demo agent, no model called)."
    if NEEDS_NUDGE in instructions.lower() and not nudged:
        return summary + " (Forgot to call completeWindow.)"
    complete_window(stream, run_id, summary)
    return summary + (" Finalized after a nudge." if nudged else " Window completed.")


def main() -> int:
    prompt = sys.stdin.read()
    stream = Stream()
    stream.emit({"type": "system", "subtype": "init", "cwd": os.getcwd()})
    try:
        text, failed = act(prompt, stream), False
    except DemoError as exc:
        text, failed = str(exc), True
    if not failed:
        stream.say(text)
    stream.emit(
        {
            "type": "result",
            "subtype": "success",
            "is_error": failed,
            "result": text,
            "total_cost_usd": 0,
            "num_turns": 1,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
