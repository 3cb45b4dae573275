"""Fake `opencode run --format json` (opencode 1.18): JSON-lines events on stdout.

Shaped as the real 1.18.33 prints them (tests/realcli drives it): per step a
`step_start`, its `text` and `tool_use` parts (a tool_use carries its input and its
output), and a `step_finish` with the step's cost (US dollars) and tokens.

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
    emit("step_finish", part=step_finish(0.002, "tool-calls", read=1000, given=50, wrote=20))
    emit("step_start", part={"type": "step-start"})
    emit("text", part={"type": "text", "text": "OpenCode found two new items."})
    emit("step_finish", part=step_finish(0.001, "stop", read=1100, given=60, wrote=30, reasoning=5))
    return 0


def step_finish(cost, reason, *, read, given, wrote, reasoning=0):
    """A step-finish part as opencode 1.18 prints it: the step's cost in US dollars and its
    tokens, cache reads and writes apart from `input`."""
    return {
        "id": "prt_de3afb6a2001",
        "sessionID": SESSION,
        "messageID": "msg_de3afb5c1001",
        "type": "step-finish",
        "reason": reason,
        "snapshot": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        "cost": cost,
        "tokens": {
            "input": given,
            "output": wrote,
            "reasoning": reasoning,
            "cache": {"read": read, "write": 0},
        },
    }


if __name__ == "__main__":
    sys.exit(main())
