"""build_prompt: the watcher's prompt, a separator, and the run's context."""

from __future__ import annotations

import json
from typing import Any

import pytest

from device_agent.lanes.watcher.prompt import SEPARATOR, build_prompt
from device_agent.server.protocol import PayloadError, WatcherRun, parse_watcher_run
from tests.support.claims import watcher_claim

APPROVED = {
    "watcher_id": 123,
    "agent_id": "agent_1",
    "window_start": "2026-05-17T00:00:00.000Z",
    "window_end": "2026-05-18T00:00:00.000Z",
    "dispatch_source": "scheduled",
    "version_id": 7,
    "device_worker_id": "0d7e1c1e-0000-4000-8000-000000000001",
    "agent_kind": "claude-code",
    "kind": "digest",
}


def run(prompt: Any = "  Summarize new issues in lobu-ai/lobu.\n") -> WatcherRun:
    changes = {"watcher.name": "Issue digest", "watcher.slug": "issue-digest"}
    changes |= {"watcher.prompt": prompt, "event.payload": APPROVED}
    return parse_watcher_run(watcher_claim(changes))


def test_prompt_then_separator_then_context() -> None:
    prompt = build_prompt(run())
    head, context = prompt.split(SEPARATOR)
    assert head == "Summarize new issues in lobu-ai/lobu."
    assert "Watcher: Issue digest\n" in context
    assert "Watcher slug: issue-digest\n" in context
    assert "Watcher id: 123\n" in context
    assert "Run id: 4711\n" in context
    assert "Window start: 2026-05-17T00:00:00.000Z\n" in context
    assert "Window end: 2026-05-18T00:00:00.000Z\n" in context
    assert "Dispatch source: scheduled\n" in context
    block = context.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(block) == APPROVED
    assert '\n  "window_end": ' in block  # pretty-printed


def test_prompt_is_a_pure_function() -> None:
    assert build_prompt(run()) == build_prompt(run())


@pytest.mark.parametrize("missing", [None, "", "   \n\t"])
def test_a_watcher_without_prompt_fails_clearly(missing: Any) -> None:
    with pytest.raises(PayloadError, match=r"^watcher 123 has no prompt"):
        build_prompt(run(prompt=missing))
