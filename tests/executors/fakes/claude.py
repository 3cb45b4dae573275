"""Fake `claude -p --output-format json` (Claude Code 2.1): one result object on stdout.

FAKE_MODE: success | is_error (exit 0) | is_error_exit1 | max_turns | mcp | garbage
"""

import json
import os
import sys

from _report import file_facts, option, report


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
        "usage": {"input_tokens": 1200, "output_tokens": 340},
        "permission_denials": [],
    }
    base.update(fields)
    print(json.dumps({key: value for key, value in base.items() if key not in without}))


def main():
    args = sys.argv[1:]
    if args == ["--version"]:
        print("2.1.197 (Claude Code)")
        return 0
    if "-p" not in args or option(args, "--output-format") != "json":
        print("error: this fake only knows -p --output-format json", file=sys.stderr)
        return 2
    prompt = sys.stdin.read()  # the real CLI reads its prompt from stdin without an argument
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
    mode = os.environ.get("FAKE_MODE", "success")
    if mode == "is_error":
        result(
            is_error=True, result="Not logged in · Please run /login", num_turns=1, total_cost_usd=0
        )
        return 0
    if mode == "is_error_exit1":
        result(is_error=True, result="API Error: 529 Overloaded", num_turns=1)
        return 1
    if mode == "max_turns":
        # The real error_max_turns object has no "result", only "errors".
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
    first_line = prompt.strip().splitlines()[0]
    result(result=f"Claude did: {first_line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
