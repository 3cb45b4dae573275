"""Fake `claude -p --output-format stream-json --verbose` (Claude Code 2.1): JSON-lines events.

The events are shaped as the real 2.1.337 prints them (tests/realcli drives it):
a `system`/`init` event, then each `assistant` message (thinking, text and
tool_use blocks, with its usage) and each `user` message carrying tool_result
blocks, and last the `result` object `--output-format json` would print alone.

The mode is named in the prompt as a marker (`[[is_error]]`), so that each run
of one agent can behave differently; else FAKE_MODE; else success.
  success         reads a file with its Read tool, then "Summary: <first line of the prompt>"
  is_error        `is_error: true` with exit status 0 (Claude does this when not logged in)
  is_error_exit1  `is_error: true` with exit status 1 (an API error)
  max_turns       `error_max_turns`: no "result", only "errors"; exit 1
  mcp             says which mode its MCP config file had
  lobu_tool       calls the Lobu MCP server's query_sdk tool (knowledge.read) and says what it
                  answered; denied, as `claude -p` denies it, unless --allowedTools allows it
  garbage         not JSON at all
  hang            sleep (to be killed by the agent)
Timing markers: [[slow]] waits FAKE_SLOW_SECONDS (default 1); [[sleep=S]] waits S seconds;
[[until=PATH]] waits until the file PATH exists (a test's gate; at most a minute).
Cost: the final `result` event's `total_cost_usd` is [[cost=X]] from the prompt, else
FAKE_COST_USD, else 0.0421; its `usage` (the run's tokens) and `modelUsage` are shaped as
Claude Code 2.1 prints them. Each assistant message carries its own `usage` too, as in the
real stream; the run's cost is only in the `result` event.
Every invocation leaves a record in $FAKE_CLI_LOG and its facts in $FAKE_REPORT.
"""

import json
import os
import re
import sys
import time

from _report import (
    call_tool,
    claude_stream_refusal,
    file_facts,
    log_execution,
    option,
    report,
    tool_permitted,
)

MODES = ("is_error_exit1", "is_error", "max_turns", "mcp", "lobu_tool", "garbage", "hang")
LOBU_TOOL = "mcp__lobu__query_sdk"
SESSION = "9f1c2d3e-0000-4000-8000-123456789abc"
MODEL = "claude-opus-5-5"
COST = 0.0421  # the run's total_cost_usd; main() sets it from the prompt or FAKE_COST_USD


def emit(event):
    print(json.dumps(event), flush=True)


def init():
    emit(
        {
            "type": "system",
            "subtype": "init",
            "cwd": os.getcwd(),
            "session_id": SESSION,
            "tools": ["Bash", "Read", "ToolSearch", "mcp__lobu__query_sdk", "mcp__lobu__run_sdk"],
            "mcp_servers": [{"name": "lobu", "status": "connected", "source": "dynamic"}],
            "model": MODEL,
            "permissionMode": "default",
            "apiKeySource": "ANTHROPIC_API_KEY",
            "claude_code_version": "2.1.337",
        }
    )


def assistant(number, *blocks):
    emit(
        {
            "type": "assistant",
            "message": {
                "id": f"msg_{number:02d}",
                "type": "message",
                "role": "assistant",
                "model": MODEL,
                "content": list(blocks),
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 400, "output_tokens": 85},
                "context_management": None,
            },
            "parent_tool_use_id": None,
            "session_id": SESSION,
            "uuid": f"00000000-0000-4000-8000-0000000000{number:02d}",
            "timestamp": "2026-12-08T01:24:40.309Z",
        }
    )


def tool_result(tool_use_id, text, is_error=False):
    block = {"tool_use_id": tool_use_id, "type": "tool_result", "content": text}
    if is_error:
        block["is_error"] = True
    emit(
        {
            "type": "user",
            "message": {"role": "user", "content": [block]},
            "parent_tool_use_id": None,
            "session_id": SESSION,
            "uuid": "00000000-0000-4000-8000-000000000099",
            "timestamp": "2026-12-08T01:24:40.375Z",
            "tool_use_result": {"stdout": text, "stderr": "", "interrupted": False},
        }
    )


def result(without=(), **fields):
    """The final `result` event: what `--output-format json` prints alone, with the run's cost
    (`total_cost_usd`) and tokens (`usage`, cache reads and writes apart from `input_tokens`)."""
    base = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "duration_ms": 1234,
        "duration_api_ms": 1000,
        "num_turns": 3,
        "result": "",
        "stop_reason": "end_turn",
        "session_id": SESSION,
        "total_cost_usd": COST,
        "usage": {
            "input_tokens": 1200,
            "cache_creation_input_tokens": 300,
            "cache_read_input_tokens": 5000,
            "output_tokens": 340,
            "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
            "service_tier": "standard",
            "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 300},
        },
        "modelUsage": {
            MODEL: {
                "inputTokens": 1200,
                "outputTokens": 340,
                "cacheReadInputTokens": 5000,
                "cacheCreationInputTokens": 300,
                "webSearchRequests": 0,
                "costUSD": COST,
                "contextWindow": 200000,
            }
        },
        "permission_denials": [],
        "terminal_reason": "completed",
        "uuid": "c3a1f0de-0000-4000-8000-0123456789ab",
    }
    base.update(fields)
    emit({key: value for key, value in base.items() if key not in without})


def mode_of(prompt):
    for mode in MODES:
        if f"[[{mode}]]" in prompt:
            return mode
    return os.environ.get("FAKE_MODE", "success")


def cost_of(prompt):
    marked = re.search(r"\[\[cost=([0-9.]+)\]\]", prompt)
    return float(marked.group(1) if marked else os.environ.get("FAKE_COST_USD", "0.0421"))


def take_time(prompt):
    if "[[slow]]" in prompt:
        time.sleep(float(os.environ.get("FAKE_SLOW_SECONDS", "1")))
    pause = re.search(r"\[\[sleep=([0-9.]+)\]\]", prompt)
    if pause:
        time.sleep(float(pause.group(1)))
    gate = re.search(r"\[\[until=([^\]]+)\]\]", prompt)
    deadline = time.monotonic() + 60
    while gate and not os.path.exists(gate.group(1)) and time.monotonic() < deadline:
        time.sleep(0.02)


def use_lobu_tool(args, mcp):
    """The query_sdk call as Claude Code streams it: the tool_use, its result (a denial when
    --allowedTools does not allow it, as `claude -p` has nobody to ask), then the answer."""
    if mcp is None:
        answer = "No Lobu tools were wired in."
        assistant(1, {"type": "text", "text": answer})
        result(result=answer)
        return 0
    arguments = {"method": "knowledge.read", "params": {}}
    assistant(1, {"type": "tool_use", "id": "toolu_01", "name": LOBU_TOOL, "input": arguments})
    if not tool_permitted(args, LOBU_TOOL):
        tool_result(
            "toolu_01",
            f"Claude requested permissions to use {LOBU_TOOL}, but you haven't granted it yet.",
            is_error=True,
        )
        answer = f"Permission to use {LOBU_TOOL} was denied."
        assistant(2, {"type": "text", "text": answer})
        denial = {"tool_name": LOBU_TOOL, "tool_use_id": "toolu_01", "tool_input": arguments}
        result(result=answer, permission_denials=[denial])
        return 0
    server = mcp["content"]["mcpServers"]["lobu"]
    answered = call_tool(server, "query_sdk", arguments)
    text = answered["result"]["content"][0]["text"]
    tool_result("toolu_01", text)
    answer = f"Lobu answered: {text}"
    assistant(2, {"type": "text", "text": answer})
    result(result=answer)
    return 0


def main():
    global COST
    args = sys.argv[1:]
    if args == ["--version"]:  # the version its profile was checked against, unless told
        print(f"{os.environ.get('FAKE_VERSION', '2.1.337')} (Claude Code)")
        return 0
    refused = claude_stream_refusal(args)
    if refused is not None:
        return refused
    prompt = sys.stdin.read()  # the real CLI reads its prompt from stdin without an argument
    log_execution(prompt)  # even a prompt a kill cut short: it was started
    if not prompt:
        print(
            "Error: Input must be provided either through stdin or as a prompt argument "
            "when using --print",
            file=sys.stderr,
        )
        return 1
    mcp_path = option(args, "--mcp-config")
    mcp = file_facts(mcp_path) if mcp_path else None
    report(prompt=prompt, mcp=mcp)
    COST = cost_of(prompt)
    mode = mode_of(prompt)
    if mode == "garbage":
        print("Welcome to Claude Code! <html>not json</html>")
        return 0
    init()
    if mode == "hang":
        time.sleep(3600)
    take_time(prompt)
    if mode == "is_error":
        result(
            is_error=True, result="Not logged in · Please run /login", num_turns=1, total_cost_usd=0
        )
        return 0
    if mode == "is_error_exit1":
        result(is_error=True, result="API Error: 529 Overloaded", num_turns=1)
        return 1
    if mode == "max_turns":
        result(
            without=("result",),
            subtype="error_max_turns",
            is_error=True,
            errors=["Reached maximum number of turns (2)"],
        )
        return 1
    if mode == "mcp":
        answer = f"mcp config mode {mcp['mode'] if mcp else None}"
        assistant(1, {"type": "text", "text": answer})
        result(result=answer)
        return 0
    if mode == "lobu_tool":
        return use_lobu_tool(args, mcp)
    first_line = prompt.strip().splitlines()[0]
    answer = f"Summary: {first_line}"
    assistant(
        1,
        {"type": "thinking", "thinking": "The user wants a summary.", "signature": "c2ln"},
        {"type": "text", "text": "Let me read the notes first."},
        {
            "type": "tool_use",
            "id": "toolu_01Read",
            "name": "Read",
            "input": {"file_path": "notes.md"},
        },
    )
    tool_result("toolu_01Read", "1\tTwo new items since Monday.")
    assistant(2, {"type": "text", "text": answer})
    result(result=answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
