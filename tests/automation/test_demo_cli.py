"""The automation-lane demo agent against a loopback stand-in of the Lobu MCP server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from device_agent.lanes.automation.payload import parse_automation_run
from device_agent.lanes.automation.prompt import build_automation_prompt
from tests.support.claims import SESSION_TOKEN, automation_claim


class McpStandIn(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.calls: list[dict[str, Any]] = []
        self.status = 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/mcp/acme"


class _Handler(BaseHTTPRequestHandler):
    server: McpStandIn

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length))
        self.server.calls.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        answer = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": {"ok": True}}).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def mcp() -> Iterator[McpStandIn]:
    server = McpStandIn()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def demo(prompt: str, url: str | None, token: str = SESSION_TOKEN) -> tuple[int, dict[str, Any]]:
    """Its exit status and the `result` event its stream ends with."""
    status, events = demo_stream(prompt, url, token)
    return status, events[-1]


def demo_stream(
    prompt: str, url: str | None, token: str = SESSION_TOKEN
) -> tuple[int, list[dict[str, Any]]]:
    env = {"PATH": "/usr/bin:/bin"}
    if url is not None:
        env |= {"LOBU_MEMORY_URL": url, "LOBU_API_TOKEN": token}
    done = subprocess.run(
        [sys.executable, "-m", "device_agent.demo.automation_cli"],
        input=prompt,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=30,
    )
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def prompt_for(author_text: str, *, nudge: str | None = None, turn: bool = False) -> str:
    changes: dict[str, Any] = {"automation.prompt": author_text}
    if turn:
        changes["event.payload.trigger_execution"] = "turn"
    return build_automation_prompt(parse_automation_run(automation_claim(changes)), nudge=nudge)


def test_a_plain_window_run_is_completed_on_the_first_round(mcp: McpStandIn) -> None:
    status, result = demo(prompt_for("Sort the new mail."), mcp.url)
    assert status == 0
    assert result["is_error"] is False
    assert result["result"].endswith("Window completed.")
    [call] = mcp.calls
    assert call["path"] == "/mcp/acme"
    assert call["auth"] == f"Bearer {SESSION_TOKEN}"
    assert call["body"]["method"] == "tools/call"
    assert call["body"]["params"]["name"] == "run_sdk"
    arguments = call["body"]["params"]["arguments"]
    assert arguments["method"] == "automations.completeWindow"
    assert arguments["params"]["run_id"] == 812


def test_a_run_that_needs_a_nudge_finalizes_only_on_the_nudged_round(mcp: McpStandIn) -> None:
    text = "Sort the new mail. (This one needs a nudge.)"
    status, result = demo(prompt_for(text), mcp.url)
    assert (status, result["is_error"]) == (0, False)
    assert mcp.calls == []
    status, result = demo(prompt_for(text, nudge="Call completeWindow now."), mcp.url)
    assert status == 0
    assert result["result"].endswith("Finalized after a nudge.")
    assert len(mcp.calls) == 1


def test_an_event_turn_never_calls_complete_window(mcp: McpStandIn) -> None:
    status, result = demo(prompt_for("Answer the message.", turn=True), mcp.url)
    assert (status, result["is_error"]) == (0, False)
    assert mcp.calls == []


def test_without_a_session_it_fails_saying_so() -> None:
    status, result = demo(prompt_for("Sort the new mail."), None)
    assert status == 1
    assert result["is_error"] is True
    assert "LOBU_MEMORY_URL" in result["result"]


def test_it_refuses_to_talk_to_anything_but_loopback() -> None:
    status, result = demo(prompt_for("Sort the new mail."), "https://lobu.example.com/mcp")
    assert status == 1
    assert "only talks to a loopback server" in result["result"]


def test_a_refused_tool_call_fails_the_round(mcp: McpStandIn) -> None:
    mcp.status = 401
    status, result = demo(prompt_for("Sort the new mail."), mcp.url)
    assert status == 1
    assert result["result"] == "the Lobu MCP server answered 401 to run_sdk"


def test_it_streams_its_tool_calls_as_claude_code_does(mcp: McpStandIn) -> None:
    status, events = demo_stream(prompt_for("Sort the new mail."), mcp.url)
    assert status == 0
    assert [event["type"] for event in events] == [
        "system",
        "assistant",
        "user",
        "assistant",
        "result",
    ]
    [use] = events[1]["message"]["content"]
    assert (use["type"], use["name"]) == ("tool_use", "mcp__lobu__run_sdk")
    [result] = events[2]["message"]["content"]
    assert (result["type"], result["tool_use_id"]) == ("tool_result", use["id"])
    assert events[3]["message"]["content"][0]["text"] == events[4]["result"]
