"""Fake `claude -p --output-format json` for the automation lane: finalizes through MCP.

Like Claude Code given `--mcp-config` and `--allowedTools mcp__lobu__run_sdk`, it
calls the `lobu` MCP server's `run_sdk` tool to `completeWindow` the run named
in the prompt's completion contract, then prints one result object. The MCP
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
import urllib.request

from _report import file_facts, log_execution, option, report

NUDGE = "FINALIZE NUDGE"
RUN_ID = re.compile(r"completeWindow\(\{ run_id: (\d+),")


def complete_window(mcp_config, run_id):
    server = mcp_config["mcpServers"]["lobu"]
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "run_sdk",
            "arguments": {
                "method": "automations.completeWindow",
                "params": {"run_id": run_id, "extracted_data": {"summary": "ok"}},
            },
        },
    }
    request = urllib.request.Request(  # noqa: S310 - the dev server on loopback
        server["url"],
        data=json.dumps(call).encode(),
        headers={**server["headers"], "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return json.loads(answer.read())


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
    if found and completes and mcp is not None:
        complete_window(mcp["content"], int(found.group(1)))
        text = "Window completed."
    else:
        text = "Here is a summary."
    print(json.dumps(result_object(text, prompt)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
