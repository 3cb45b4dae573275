"""Fake `claude -p --output-format json` (Claude Code 2.1): one result object on stdout.

The mode is named in the prompt as a marker (`[[is_error]]`), so that each run
of one agent can behave differently; else FAKE_MODE; else success.
  success         "Summary: <first line of the prompt>", exit 0
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
Cost: the result's `total_cost_usd` is [[cost=X]] from the prompt, else FAKE_COST_USD, else
0.0421; `usage` and `modelUsage` are shaped as Claude Code 2.1 prints them.
Every invocation leaves a record in $FAKE_CLI_LOG and its facts in $FAKE_REPORT.
"""

import json
import os
import re
import sys
import time

from _report import call_tool, file_facts, log_execution, option, report, tool_permitted

MODES = ("is_error_exit1", "is_error", "max_turns", "mcp", "lobu_tool", "garbage", "hang")
LOBU_TOOL = "mcp__lobu__query_sdk"


def result(without=(), **fields):
    base = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "duration_ms": 1234,
        "duration_api_ms": 1000,
        "num_turns": 3,
        "result": "",
        "stop_reason": "end_turn",
        "session_id": "9f1c2d3e-0000-4000-8000-123456789abc",
        "total_cost_usd": 0.0421,
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
            "claude-sonnet-4-5-20250929": {
                "inputTokens": 1200,
                "outputTokens": 340,
                "cacheReadInputTokens": 5000,
                "cacheCreationInputTokens": 300,
                "webSearchRequests": 0,
                "costUSD": 0.0421,
                "contextWindow": 200000,
            }
        },
        "permission_denials": [],
        "uuid": "c3a1f0de-0000-4000-8000-0123456789ab",
    }
    base.update(fields)
    if "total_cost_usd" in base and "total_cost_usd" not in fields:
        base["total_cost_usd"] = COST
    print(json.dumps({key: value for key, value in base.items() if key not in without}))


def mode_of(prompt):
    for mode in MODES:
        if f"[[{mode}]]" in prompt:
            return mode
    return os.environ.get("FAKE_MODE", "success")


def cost_of(prompt):
    marked = re.search(r"\[\[cost=([0-9.]+)\]\]", prompt)
    return float(marked.group(1) if marked else os.environ.get("FAKE_COST_USD", "0.0421"))


COST = 0.0421


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
    if mcp is None:
        result(result="No Lobu tools were wired in.")
        return 0
    if not tool_permitted(args, LOBU_TOOL):
        denial = {"tool_name": LOBU_TOOL, "tool_use_id": "toolu_01", "tool_input": {}}
        result(result=f"Permission to use {LOBU_TOOL} was denied.", permission_denials=[denial])
        return 0
    server = mcp["content"]["mcpServers"]["lobu"]
    answer = call_tool(server, "query_sdk", {"method": "knowledge.read", "params": {}})
    text = answer["result"]["content"][0]["text"]
    result(result=f"Lobu answered: {text}")
    return 0


def main():
    args = sys.argv[1:]
    if args == ["--version"]:  # the version its profile was checked against, unless told
        print(f"{os.environ.get('FAKE_VERSION', '2.1.337')} (Claude Code)")
        return 0
    if "-p" not in args or option(args, "--output-format") != "json":
        print("error: this fake only knows -p --output-format json", file=sys.stderr)
        return 2
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
    global COST
    COST = cost_of(prompt)
    mode = mode_of(prompt)
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
    if mode == "garbage":
        print("Welcome to Claude Code! <html>not json</html>")
        return 0
    if mode == "mcp":
        result(result=f"mcp config mode {mcp['mode'] if mcp else None}")
        return 0
    if mode == "lobu_tool":
        return use_lobu_tool(args, mcp)
    first_line = prompt.strip().splitlines()[0]
    result(result=f"Summary: {first_line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
