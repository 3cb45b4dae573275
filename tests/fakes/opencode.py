"""Fake `opencode run --format json` (opencode 1.18): JSON-lines events on stdout.

Shaped as the real 1.18.33 prints them (tests/realcli drives it): per step a
`step_start`, its `text` and `tool_use` parts (a tool_use carries its input and its
output), and a `step_finish` with the step's tokens.

FAKE_MODE: success | error
"""

import json
import os
import sys
import time

from _report import option, report

SESSION = "ses_de3afb5bdffeBGShrtGMdKoyNa"


def emit(kind, **fields):
    print(
        json.dumps(
            {"type": kind, "timestamp": int(time.time() * 1000), "sessionID": SESSION, **fields}
        ),
        flush=True,
    )


def main():
    args = sys.argv[1:]
    if args[:1] != ["run"] or option(args, "--format") != "json":
        print("fake opencode: expected run --format json", file=sys.stderr)
        return 1
    prompt = sys.stdin.read()
    report(prompt=prompt)
    if os.environ.get("FAKE_MODE") == "error":
        emit(
            "error",
            error={
                "name": "ProviderAuthError",
                "data": {"message": "No API key for provider anthropic"},
            },
        )
        return 1
    tokens = {"input": 50, "output": 10, "reasoning": 0, "cache": {"write": 0, "read": 5}}
    emit("step_start", part={"type": "step-start"})
    emit("text", part={"type": "text", "text": "Looking at the window first."})
    state = {
        "status": "completed",
        "input": {"filePath": "notes.md"},
        "output": "Two new items since Monday.",
        "metadata": {"truncated": False},
        "title": "notes.md",
        "time": {"start": 1796693113254, "end": 1796693113310},
    }
    emit("tool_use", part={"type": "tool", "tool": "read", "callID": "call_1", "state": state})
    emit("step_finish", part={"type": "step-finish", "reason": "tool-calls", "tokens": tokens})
    emit("step_start", part={"type": "step-start"})
    emit("text", part={"type": "text", "text": "OpenCode found two new items."})
    emit("step_finish", part={"type": "step-finish", "reason": "stop", "tokens": tokens})
    return 0


if __name__ == "__main__":
    sys.exit(main())
