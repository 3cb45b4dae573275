"""The prompt a CLI agent gets for a watcher run (docs/protocol.md, "execution_config and the CLI").

The watcher's own prompt comes first, untouched; after a separator comes the
context the agent needs to do the run: which watcher, which window, how it was
dispatched, and the event's approved input as JSON. The context block's line
labels are stable (the offline demo agent reads them).
"""

from __future__ import annotations

import json
from typing import Final

from device_agent.server.protocol import PayloadError, WatcherRun

SEPARATOR: Final = "\n\n---\n\n"


def build_prompt(run: WatcherRun) -> str:
    """The watcher's prompt, then the run's context. `PayloadError` if there is no prompt."""
    watcher, event = run.watcher, run.event
    if watcher.prompt is None or not watcher.prompt.strip():
        raise PayloadError(
            f"watcher {watcher.id} has no prompt: give the watcher a prompt in Lobu "
            "so the agent knows what to do"
        )
    approved = json.dumps(
        event.approved_input, indent=2, sort_keys=True, ensure_ascii=False, default=str
    )
    context = "\n".join(
        [
            "Context for this run (added by the Lobu device agent):",
            f"Watcher: {watcher.name}",
            f"Watcher slug: {watcher.slug or '-'}",
            f"Watcher id: {watcher.id}",
            f"Run id: {run.run_id}",
            f"Window start: {event.window_start}",
            f"Window end: {event.window_end}",
            f"Dispatch source: {event.dispatch_source or 'unknown'}",
            "",
            "Event input (approved_input):",
            "```json",
            approved,
            "```",
        ]
    )
    return watcher.prompt.strip() + SEPARATOR + context + "\n"
