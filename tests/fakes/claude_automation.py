"""Fake `claude -p --output-format json` for the automation lane: finalizes through MCP.

Like Claude Code given `--mcp-config` and `--allowedTools mcp__lobu__run_sdk`, it
calls the `lobu` MCP server's `run_sdk` tool to `completeWindow` the run named
in the prompt's completion contract, then prints one result object. Without
that tool in `--allowedTools` the call is denied, as `claude -p` denies it. The MCP
server's URL and bearer token come from the config file, as Claude reads them.
Markers in the automation's text choose the behaviour:
  (none)      completes the window on the first round
  [[forget]]  only prints a summary on round 1; completes when the prompt has a FINALIZE NUDGE
  [[never]]   never completes the window
  [[hang]]    sleeps until killed
  [[forget-then-hang]]  round 1 like [[forget]]; the nudged round sleeps until killed
An event turn (no window contract) only replies. Facts go to $FAKE_REPORT.<round>.
"""

import json
import os
import re
import sys
import time

from _report import call_tool, file_facts, log_execution, option, report, tool_permitted

NUDGE = "FINALIZE NUDGE"
RUN_ID = re.compile(r"completeWindow\(\{ run_id: (\d+),")


def complete_window(mcp_config, run_id):
    arguments = {
        "method": "automations.completeWindow",
        "params": {"run_id": run_id, "extracted_data": {"summary": "ok"}},
    }
    return call_tool(mcp_config["mcpServers"]["lobu"], "run_sdk", arguments)


def result_object(text, prompt):
    """A successful result as Claude Code 2.1 prints it, with what the run cost: [[cost=X]] in
    the prompt, else FAKE_COST_USD, else 0.0421 US dollars."""
    marked = re.search(r"\[\[cost=([0-9.]+)\]\]", prompt)
    cost = float(marked.group(1) if marked else os.environ.get("FAKE_COST_USD", "0.0421"))
    return {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": text,
        "num_turns": 2,
        "session_id": "9f1c2d3e-0000-4000-8000-123456789abc",
        "total_cost_usd": cost,
        "usage": {
            "input_tokens": 900,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 4000,
            "output_tokens": 120,
        },
    }


def main():
    args = sys.argv[1:]
    if "-p" not in args or option(args, "--output-format") != "json":
        print("error: this fake only knows -p --output-format json", file=sys.stderr)
        return 2
    prompt = sys.stdin.read()
    log_execution(prompt)
    mcp_path = option(args, "--mcp-config")
    mcp = file_facts(mcp_path) if mcp_path else None
    if os.environ.get("FAKE_REPORT"):
        os.environ["FAKE_REPORT"] += "." + ("2" if NUDGE in prompt else "1")
    report(prompt=prompt, mcp=mcp)
    nudged = NUDGE in prompt
    if "[[hang]]" in prompt or ("[[forget-then-hang]]" in prompt and nudged):
        time.sleep(3600)
    found = RUN_ID.search(prompt)
    forgets = "[[forget]]" in prompt or "[[forget-then-hang]]" in prompt
    completes = "[[never]]" not in prompt and (not forgets or nudged)
    denials = []
    if found and completes and mcp is not None:
        if tool_permitted(args, "mcp__lobu__run_sdk"):
            complete_window(mcp["content"], int(found.group(1)))
            text = "Window completed."
        else:
            denials.append({"tool_name": "mcp__lobu__run_sdk", "tool_use_id": "toolu_01"})
            text = "I was not allowed to call run_sdk, so the window is not completed."
    else:
        text = "Here is a summary."
    print(json.dumps({**result_object(text, prompt), "permission_denials": denials}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
