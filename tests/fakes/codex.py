"""Fake `codex exec --json ... -` (codex-cli 0.171): JSON-lines events on stdout, logs on stderr.

FAKE_MODE: success (with a non-fatal "Reconnecting" error event on the way) |
no_final | turn_failed | error_last
"""

import json
import os
import sys

from _report import report


def emit(**event):
    print(json.dumps(event), flush=True)


def main():
    args = sys.argv[1:]
    if args[:1] != ["exec"] or "--json" not in args or args[-1] != "-":
        print("fake codex: expected exec --json ... -", file=sys.stderr)
        return 2
    prompt = sys.stdin.read()
    report(prompt=prompt)
    mode = os.environ.get("FAKE_MODE", "success")
    print("2026-11-27T09:21:26Z WARN codex_core: starting", file=sys.stderr)
    emit(type="thread.started", thread_id="01a21c4f-4520-7881-8612-8af118f7b615")
    emit(type="turn.started")
    emit(type="item.completed", item={"id": "item_0", "type": "reasoning", "text": "thinking"})
    if mode == "turn_failed":
        emit(type="error", message="Reconnecting... 5/5 (stream disconnected)")
        emit(type="turn.failed", error={"message": "stream disconnected before completion"})
        return 1
    if mode == "error_last":
        emit(type="error", message="unexpected status 401 Unauthorized: Missing bearer")
        return 1
    emit(
        type="item.completed",
        item={
            "id": "item_1",
            "type": "command_execution",
            "command": "ls",
            "aggregated_output": "a b",
            "exit_code": 0,
            "status": "completed",
        },
    )
    if mode == "success":
        emit(type="error", message="Reconnecting... 1/5 (stream disconnected)")
        emit(
            type="item.completed",
            item={"id": "item_2", "type": "agent_message", "text": "Codex wrote the digest."},
        )
    emit(
        type="turn.completed",
        usage={"input_tokens": 2400, "cached_input_tokens": 100, "output_tokens": 180},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
