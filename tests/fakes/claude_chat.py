"""Fake `claude -p --output-format stream-json --verbose` for the chat lane: answers the
current user message.

It reads the prompt on stdin, takes the message out of the `## Current user message`
section (between its fence lines), and prints the answer as Claude Code streams it: an
assistant message, then the `result` object with what the run cost (`total_cost_usd`:
[[cost=X]] in the prompt, else FAKE_COST_USD, else 0.0421; and `usage`).
Markers in the message choose the behaviour:
  (none)      replies "You said: <message>"
  [[fail]]    prints an error result (`is_error: true`) and exits 1, as Claude does on a
              refused API call
  [[empty]]   exits 0 with an empty result
  [[hang]]    sleeps until killed
Each run is logged to $FAKE_CLI_LOG; facts (argv, env, pid, the MCP file) go to $FAKE_REPORT.
"""

import json
import sys
import time

from _report import (
    claude_result_event,
    claude_stream_refusal,
    file_facts,
    log_execution,
    option,
    report,
)

HEADING = "## Current user message\n\n"
SESSION = "9f1c2d3e-0000-4000-8000-123456789abc"


def current_message(prompt):
    """The message between the fence lines under the last heading (the prompt ends there)."""
    quoted = prompt.rsplit(HEADING, 1)[-1]
    lines = quoted.split("\n")
    return "\n".join(lines[1:-1])


def main():
    args = sys.argv[1:]
    refused = claude_stream_refusal(args)
    if refused is not None:
        return refused
    prompt = sys.stdin.read()
    log_execution(prompt)
    mcp_path = option(args, "--mcp-config")
    report(prompt=prompt, mcp=file_facts(mcp_path) if mcp_path else None)
    message = current_message(prompt)
    if "[[hang]]" in message:
        time.sleep(3600)
    if "[[fail]]" in message:
        result = {"type": "result", "subtype": "success", "is_error": True}
        result["result"] = "Credit balance is too low"
        print(json.dumps(result))
        return 1
    text = "" if "[[empty]]" in message else f"You said: {message}"
    if text:
        reply = {"role": "assistant", "content": [{"type": "text", "text": text}]}
        print(json.dumps({"type": "assistant", "message": reply, "parent_tool_use_id": None}))
    print(json.dumps(claude_result_event(text, prompt, SESSION)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
