"""Fake `opencode run --format json` (opencode 1.18): JSON-lines events on stdout.

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
    emit("step_finish", part={"type": "step-finish", "cost": 0.002, "tokens": {"input": 50}})
    emit("text", part={"type": "text", "text": "OpenCode found two new items."})
    emit("step_finish", part={"type": "step-finish", "cost": 0.001, "tokens": {"input": 60}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
