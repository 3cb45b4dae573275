"""Fake `claude -p --output-format stream-json --verbose` for the automation lane: finalizes
through MCP.

Like Claude Code given `--mcp-config` and `--allowedTools mcp__lobu__run_sdk`, it
calls the `lobu` MCP server's `run_sdk` tool to `completeWindow` the run named
in the prompt's completion contract, and prints the events the real CLI prints for
it (tests/realcli): the tool call, its result, the answer and the `result` object.
The MCP server's URL and bearer token come from the config file, as Claude reads them.
With [[secret]] in the prompt it also echoes the MCP bearer token in its answer (a CLI
printing a secret). [[big=N]] makes the tool result N characters long.
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


SESSION = "5e55f00d-0000-4000-8000-00000000a070"


def emit(event):
    print(json.dumps(event), flush=True)


def message(role, *blocks, usage=None):
    body = {"role": role, "content": list(blocks)}
    if role == "assistant":
        body = {"id": "msg_stub", "type": "message", "model": "claude-opus-5-5", **body}
        body["usage"] = usage or {"input_tokens": 100, "output_tokens": 20}
    emit({"type": role, "message": body, "parent_tool_use_id": None, "session_id": SESSION})


def main():
    args = sys.argv[1:]
    if "-p" not in args or option(args, "--output-format") != "stream-json":
        print("error: this fake only knows -p --output-format stream-json", file=sys.stderr)
        return 2
    if "--verbose" not in args:
        print(
            "Error: When using --print, --output-format=stream-json requires --verbose",
            file=sys.stderr,
        )
        return 1
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
    emit({"type": "system", "subtype": "init", "cwd": os.getcwd(), "session_id": SESSION})
    found = RUN_ID.search(prompt)
    forgets = "[[forget]]" in prompt or "[[forget-then-hang]]" in prompt
    completes = "[[never]]" not in prompt and (not forgets or nudged)
    if found and completes and mcp is not None:
        arguments = {
            "method": "automations.completeWindow",
            "params": {"run_id": int(found.group(1)), "extracted_data": {"summary": "ok"}},
        }
        tool = {"type": "tool_use", "id": "toolu_01Run", "name": "mcp__lobu__run_sdk"}
        message("assistant", {**tool, "input": arguments})
        answer = complete_window(mcp["content"], int(found.group(1)))
        content = answer.get("result", {}).get("content", [])
        big = re.search(r"\[\[big=(\d+)\]\]", prompt)
        if big:
            content = [{"type": "text", "text": "x" * int(big.group(1))}]
        result = {"tool_use_id": "toolu_01Run", "type": "tool_result", "content": content}
        message("user", result)
        text = "Window completed."
    else:
        text = "Here is a summary."
    if "[[secret]]" in prompt and mcp is not None:
        bearer = mcp["content"]["mcpServers"]["lobu"]["headers"]["Authorization"]
        text += f" (I was given {bearer})"
    message(
        "assistant",
        {"type": "text", "text": text},
        usage={"input_tokens": 300, "output_tokens": 60},
    )
    emit(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "result": text,
            "session_id": SESSION,
            "usage": {"input_tokens": 300, "output_tokens": 60},
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
