"""The transcript of an automation run, read from the real Claude Code CLI's own stream and
stored by the dev server: the real CLI installed from npm at its profile's checked version,
driven by `device-agent run --once` through a whole automation run against a loopback model
stub (tests/realcli/scenario.py, the runs the other real-CLI tests assert on too)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.realcli.conftest import Scenarios
from tests.realcli.stubs import AUTOMATION_ANSWER, FORGOT_ANSWER, NUDGE
from tests.realcli.test_real_clis import explain

pytestmark = [pytest.mark.realcli, pytest.mark.slow]


def entries(jsonl: str) -> list[dict[str, Any]]:
    assert jsonl.endswith("\n")
    return [json.loads(line) for line in jsonl.splitlines()]


def blocks(jsonl: str) -> list[tuple[str, dict[str, Any]]]:
    """(role, first content block) of every message after the header."""
    return [(e["message"]["role"], e["message"]["content"][0]) for e in entries(jsonl)[1:]]


def test_claude_codes_own_stream_is_the_transcript_the_server_stored(
    scenarios: Scenarios,
) -> None:
    outcome = scenarios.result("claude-code")["lanes"]["automation"]
    run = outcome["runs"][0]
    assert run["status"] == "completed", explain(run)
    assert run["transcript_requests"] == [200], explain(run)  # once, after the final report
    stored = run["transcript"]
    assert stored is not None, explain(run)
    assert stored["terminal_status"] == "completed"
    jsonl = stored["snapshot_jsonl"]
    header, *messages = entries(jsonl)
    assert (header["type"], header["version"]) == ("session", 3)
    assert len(header["id"]) == 36  # Claude Code's own session id (a UUID)
    assert header["cwd"].endswith("/repo")  # the user's workdir the CLI ran in
    assert [m["id"] for m in messages] == [f"acp-{n}" for n in range(1, len(messages) + 1)]
    assert [m["parentId"] for m in messages] == [None] + [m["id"] for m in messages[:-1]]
    said = blocks(jsonl)
    role, prompt = said[0]
    assert role == "user"
    assert prompt["text"].startswith("Summarise what is new in the inbox.")
    # The model (the stub) loads the Lobu tools with ToolSearch, reads, then completes the
    # window: each call is followed by its result, in the order Claude Code made them.
    calls = [block["name"] for role, block in said if block["type"] == "tool_use"]
    assert calls == ["ToolSearch", "mcp__lobu__query_sdk", "mcp__lobu__run_sdk"]
    for index, (_, block) in enumerate(said):
        if block["type"] == "tool_use":
            result_role, result = said[index + 1]
            assert (result_role, result["type"]) == ("toolResult", "tool_result")
            assert result["tool_use_id"] == block["id"]
            assert result["is_error"] is False
    [completion] = [b for r, b in said if b["type"] == "tool_use" and b["name"].endswith("run_sdk")]
    assert completion["input"]["method"] == "automations.completeWindow"
    assert completion["input"]["params"]["run_id"] == run["run_id"]
    last = messages[-1]["message"]
    assert last["role"] == "assistant"
    assert last["content"] == [{"type": "text", "text": AUTOMATION_ANSWER}]
    assert last["usage"]["inputTokens"] > 0
    assert last["usage"]["outputTokens"] > 0
    # Neither the run's session token nor the device token is in it.
    assert run["session_token"] not in jsonl
    assert outcome["device_token"] not in jsonl


def test_claude_codes_nudged_run_has_both_rounds_in_one_upload(scenarios: Scenarios) -> None:
    outcome = scenarios.result("claude-code")["lanes"]["automation"]
    run = outcome["runs"][1]
    assert run["status"] == "completed", explain(run)
    assert run["rounds"] == 2
    assert run["transcript_requests"] == [200, 200]  # the first run's, then this one's: once
    jsonl = run["transcript"]["snapshot_jsonl"]
    said = blocks(jsonl)
    prompts = [block["text"] for role, block in said if role == "user"]
    assert len(prompts) == 2
    assert NUDGE not in prompts[0]
    assert NUDGE in prompts[1]
    texts = [block["text"] for role, block in said if block["type"] == "text" and role != "user"]
    assert texts == [FORGOT_ANSWER, AUTOMATION_ANSWER]
    assert run["transcript"]["terminal_status"] == "completed"


@pytest.mark.parametrize("profile", ["codex", "gemini", "opencode", "pi"])
def test_every_other_clis_own_stream_gives_a_transcript_too(
    scenarios: Scenarios, profile: str
) -> None:
    """Each real CLI's stream is read into the same shape: the prompt, each tool call
    followed by its result, the answer with the round's tokens."""
    run = scenarios.result(profile)["lanes"]["automation"]["runs"][0]
    assert run["status"] == "completed", explain(run)
    assert run["transcript_requests"] == [200], explain(run)
    jsonl = run["transcript"]["snapshot_jsonl"]
    said = blocks(jsonl)
    assert said[0][0] == "user"
    uses = [index for index, (_, block) in enumerate(said) if block["type"] == "tool_use"]
    assert len(uses) >= 2  # knowledge.read, then completeWindow (pi: through its bash tool)
    for index in uses:
        role, result = said[index + 1]
        assert (role, result["type"]) == ("toolResult", "tool_result")
        assert result["tool_use_id"] == said[index][1]["id"]
    assert "completeWindow" in json.dumps(said[uses[-1]][1]["input"])
    last = entries(jsonl)[-1]["message"]
    assert last["content"] == [{"type": "text", "text": AUTOMATION_ANSWER}]
    assert last["usage"]["outputTokens"] > 0
    assert run["session_token"] not in jsonl
