"""An offline stand-in for a CLI coding agent, for `device-agent demo`.

Run as `python -m device_agent.demo.watcher_cli` (executors/demo.toml): it reads the
prompt on stdin, calls no model and no network, and prints one result object
shaped like Claude Code's `--output-format json`, so the demo exercises the
same reader as a real run.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from typing import Final

_FIELD: Final = re.compile(r"^(Watcher|Window start|Window end|Dispatch source): (.+)$", re.M)


def summarize(prompt: str) -> str:
    """A short, plausible result that mentions the watcher and its window."""
    fields = dict(_FIELD.findall(prompt))
    watcher = fields.get("Watcher", "this watcher")
    start, end = fields.get("Window start"), fields.get("Window end")
    window = f"the window {start} to {end}" if start and end else "its current window"
    source = fields.get("Dispatch source", "unknown")
    task = prompt.split("\n", 1)[0].strip()[:80] or "the watcher's task"
    # Both ends with their dates: a window ends on another day ("2026-11-29T00:00–00:00"
    # read as an empty window).
    short_window = (
        f"{start[:16].replace('T', ' ')} – {end[:16].replace('T', ' ')}"
        if start and end
        else "its current window"
    )
    return (
        f"Nothing needs your attention in {short_window} ({source}). "
        f'Checked "{task}" for {watcher} over {window}. '
        "This answer comes from the offline demo agent; no model was called."
    )


def main() -> int:
    started = time.monotonic()
    prompt = sys.stdin.read()
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": summarize(prompt),
        "total_cost_usd": 0,
        "num_turns": 1,
        "session_id": f"demo-{uuid.uuid4()}",
        "duration_ms": int((time.monotonic() - started) * 1000),
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
