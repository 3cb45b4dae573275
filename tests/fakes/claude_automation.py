"""Fake `claude -p --output-format stream-json --verbose` for the automation lane: finalizes
through MCP.

Like Claude Code given `--mcp-config` and `--allowedTools mcp__lobu__run_sdk`, it
calls the `lobu` MCP server's `run_sdk` tool to `completeWindow` the run named
in the prompt's completion contract, and prints the events the real CLI prints for
it (tests/realcli): the tool call, its result, the answer and the `result` object.
Without that tool in `--allowedTools` the call is denied, as `claude -p` denies it:
the tool result is the denial and the `result` lists it in `permission_denials`.
The MCP server's URL and bearer token come from the config file, as Claude reads them.
With [[secret]] in the prompt it also echoes the MCP bearer token in its answer (a CLI
printing a secret). [[big=N]] makes the tool result N characters long.
The final `result` event carries what the run cost, where Claude Code puts it:
`total_cost_usd` ([[cost=X]] in the prompt, else FAKE_COST_USD, else 0.0421) and `usage`.
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

from _report import (
    call_tool,
    claude_result_event,
    claude_stream_refusal,
    file_facts,
    log_execution,
    option,
    report,
    tool_permitted,
)

NUDGE = "FINALIZE NUDGE"
RUN_ID = re.compile(r"completeWindow\(\{ run_id: (\d+),")
RUN_SDK = "mcp__lobu__run_sdk"
SESSION = "5e55f00d-0000-4000-8000-00000000a070"


def complete_window(mcp_config, run_id):
    arguments = {
        "method": "automations.completeWindow",
        "params": {"run_id": run_id, "extracted_data": {"summary": "ok"}},
    }
    return call_tool(mcp_config["mcpServers"]["lobu"], "run_sdk", arguments)


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
    refused = claude_stream_refusal(args)
    if refused is not None:
        return refused
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
    denials = []
    if found and completes and mcp is not None:
        arguments = {
            "method": "automations.completeWindow",
            "params": {"run_id": int(found.group(1)), "extracted_data": {"summary": "ok"}},
        }
        tool = {"type": "tool_use", "id": "toolu_01Run", "name": RUN_SDK}
        message("assistant", {**tool, "input": arguments})
        if tool_permitted(args, RUN_SDK):
            answer = complete_window(mcp["content"], int(found.group(1)))
            content = answer.get("result", {}).get("content", [])
            big = re.search(r"\[\[big=(\d+)\]\]", prompt)
            if big:
                content = [{"type": "text", "text": "x" * int(big.group(1))}]
            outcome = {"tool_use_id": "toolu_01Run", "type": "tool_result", "content": content}
            text = "Window completed."
        else:
            refused = (
                f"Claude requested permissions to use {RUN_SDK}, but you haven't granted it yet."
            )
            outcome = {
                "tool_use_id": "toolu_01Run",
                "type": "tool_result",
                "content": refused,
                "is_error": True,
            }
            denials.append({"tool_name": RUN_SDK, "tool_use_id": "toolu_01Run"})
            text = "I was not allowed to call run_sdk, so the window is not completed."
        message("user", outcome)
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
    emit(claude_result_event(text, prompt, SESSION, permission_denials=denials))
    return 0


if __name__ == "__main__":
    sys.exit(main())
