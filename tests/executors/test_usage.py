"""What a run cost, read from each CLI's own report (issue 23): the `usage` detail.

Each shipped profile runs its fake, which prints cost and tokens where its CLI puts them
in the stream the profile asks for (tests/fakes/); the readers are also checked against
what a CLI could print that is not a count, and against the one-object shapes a profile
of the user's own may ask for.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from device_agent.executors.readers import (
    Captured,
    Usage,
    claude_usage,
    codex_usage,
    gemini_usage,
    opencode_usage,
    pi_usage,
    usage_of,
)
from tests.executors.conftest import Bench


@pytest.mark.parametrize(
    ("profile", "fake", "expected"),
    [
        # the stream's `result` event: input 1200 + cache writes 300 + cache reads 5000, and
        # its total_cost_usd (the assistant messages' own usage is not added to it)
        ("claude-code", "claude", {"cost_usd": 0.0421, "tokens_in": 6500, "tokens_out": 340}),
        # Codex counts tokens (cached ones inside input_tokens) and states no cost
        ("codex", "codex", {"cost_usd": None, "tokens_in": 2400, "tokens_out": 180}),
        # the `result` event's stats: input_tokens 900 in; the rest of total_tokens 1090 out
        # (answer 120, thinking and tool-use prompt 70); no cost
        ("gemini", "gemini", {"cost_usd": None, "tokens_in": 900, "tokens_out": 190}),
        # two steps: 0.002 + 0.001; input + cache reads in, output + reasoning out
        ("opencode", "opencode", {"cost_usd": 0.003, "tokens_in": 2210, "tokens_out": 55}),
        # two assistant message_end events (the tool call, the answer), each 0.00282 and
        # input 420 + cache reads 2000 in, output 64 out
        ("pi", "pi", {"cost_usd": 0.00564, "tokens_in": 4840, "tokens_out": 128}),
    ],
)
def test_each_cli_s_own_report_is_the_run_s_usage(
    bench: Bench, profile: str, fake: str, expected: dict[str, Any]
) -> None:
    bench.install(fake)
    result = bench.run(profile)
    assert result.exit_reason == "ok", result.error
    usage = result.details["usage"]
    assert usage["tokens_in"] == expected["tokens_in"]
    assert usage["tokens_out"] == expected["tokens_out"]
    assert usage["cost_usd"] == pytest.approx(expected["cost_usd"])


def test_a_pi_model_error_costs_what_its_message_says(bench: Bench) -> None:
    bench.install("pi")
    result = bench.run("pi", mode="model_error")
    assert result.failed
    assert result.details["usage"] == {"cost_usd": 0.0, "tokens_in": 0, "tokens_out": 0}


def test_a_gemini_api_error_still_reports_its_tokens(bench: Bench) -> None:
    bench.install("gemini")
    result = bench.run("gemini", mode="api_error")
    assert result.failed
    assert result.details["usage"] == {"cost_usd": None, "tokens_in": 900, "tokens_out": 190}


def test_a_profile_of_the_user_s_own_is_read_by_its_binary(bench: Bench) -> None:
    bench.install("claude")
    bench.profile(
        "claude-opus",
        'binary = "claude"\nargs = ["-p", "--output-format", "stream-json", "--verbose"]\n'
        '[output]\nreader = "jsonl"\nfinal = { type = "result" }\ntext = "result"\n',
    )
    result = bench.run("claude-opus")
    assert result.details["usage"]["cost_usd"] == 0.0421


def test_a_failed_claude_run_still_reports_what_it_cost(bench: Bench) -> None:
    bench.install("claude")
    result = bench.run("claude-code", mode="max_turns")
    assert result.failed
    assert result.details["usage"]["cost_usd"] == 0.0421


def test_a_command_of_one_s_own_has_no_usage() -> None:
    assert usage_of("command", "my-agent", Captured('{"total_cost_usd": 3}')) is None


# ------------------------------------------------------------- the readers


def claude(**fields: Any) -> Captured:
    return Captured(json.dumps({"type": "result", "result": "x", **fields}))


@pytest.mark.parametrize(
    "bad", [-1, float("nan"), float("inf"), True, "0.5", None, 1e17, [1], {"usd": 1}]
)
def test_what_is_not_a_cost_or_a_count_is_not_taken(bad: Any) -> None:
    text = json.dumps({"total_cost_usd": bad, "usage": {"input_tokens": bad, "output_tokens": 7}})
    usage = claude_usage(Captured(text))
    assert usage == Usage(cost_usd=None, tokens_in=None, tokens_out=7)


def test_a_fractional_token_count_is_not_a_count() -> None:
    assert claude_usage(claude(usage={"input_tokens": 1.5, "output_tokens": 2})) == Usage(
        tokens_out=2
    )


def test_output_without_any_usage_reads_as_none() -> None:
    assert claude_usage(claude()) is None
    assert claude_usage(Captured("not json")) is None
    assert codex_usage(Captured('{"type": "turn.started"}\n')) is None
    assert gemini_usage(Captured('{"response": "x"}')) is None
    assert gemini_usage(Captured('{"response": "x", "stats": {"models": {}}}')) is None
    assert opencode_usage(Captured('{"type": "text", "part": {"text": "x"}}\n')) is None
    assert pi_usage(Captured("Pi did: x\n")) is None


def lines(*events: Any) -> Captured:
    return Captured("\n".join(json.dumps(event) for event in events) + "\n")


def test_claude_s_stream_is_read_from_its_result_event_only() -> None:
    call = {"input_tokens": 400, "output_tokens": 85}
    stream = lines(
        {"type": "system", "subtype": "init"},
        {"type": "assistant", "message": {"role": "assistant", "usage": call}},
        {"type": "result", "total_cost_usd": 0.5, "usage": {"input_tokens": 7, "output_tokens": 3}},
    )
    assert claude_usage(stream) == Usage(cost_usd=0.5, tokens_in=7, tokens_out=3)
    # killed before its result: the assistant messages' usage is not the run's
    unfinished = lines({"type": "assistant", "message": {"role": "assistant", "usage": call}})
    assert claude_usage(unfinished) is None


def test_claude_s_one_object_is_still_read() -> None:
    text = json.dumps({"type": "result", "total_cost_usd": 0.25, "usage": {"output_tokens": 4}})
    assert claude_usage(Captured(text)) == Usage(cost_usd=0.25, tokens_out=4)


def test_gemini_s_stream_stats_are_read_from_its_last_result() -> None:
    stats = {"total_tokens": 150, "input_tokens": 100, "output_tokens": 30, "cached": 10}
    stream = lines(
        {"type": "init", "session_id": "s"},
        {"type": "message", "role": "assistant", "content": "hi", "delta": True},
        {"type": "result", "status": "success", "stats": stats},
    )
    assert gemini_usage(stream) == Usage(tokens_in=100, tokens_out=50)
    without_total = {"input_tokens": 100, "output_tokens": 30}
    assert gemini_usage(lines({"type": "result", "stats": without_total})) == Usage(
        tokens_in=100, tokens_out=30
    )
    assert gemini_usage(lines({"type": "result", "status": "success"})) is None


def test_gemini_s_one_object_is_still_read() -> None:
    tokens = {"prompt": 900, "tool": 30, "candidates": 120, "thoughts": 40, "total": 1090}
    text = json.dumps({"response": "x", "stats": {"models": {"m": {"tokens": tokens}}}}, indent=2)
    assert gemini_usage(Captured(text)) == Usage(tokens_in=930, tokens_out=160)


def test_codex_turns_add_up() -> None:
    events = [
        {"type": "turn.completed", "usage": {"input_tokens": 10, "output_tokens": 1}},
        {"type": "turn.completed", "usage": {"input_tokens": 20, "output_tokens": 2}},
    ]
    text = "\n".join(json.dumps(e) for e in events)
    assert codex_usage(Captured(text)) == Usage(tokens_in=30, tokens_out=3)


def test_opencode_zero_cost_is_a_reported_cost() -> None:
    part = {"cost": 0, "tokens": {"input": 5, "output": 1, "cache": {"read": 0, "write": 0}}}
    usage = opencode_usage(Captured(json.dumps({"type": "step_finish", "part": part})))
    assert usage == Usage(cost_usd=0.0, tokens_in=5, tokens_out=1)


def test_the_usage_detail_reads_back_from_the_journal() -> None:
    assert Usage.from_detail({"cost_usd": 0.5, "tokens_in": 3, "tokens_out": None}) == Usage(
        0.5, 3, None
    )
    assert Usage.from_detail("nonsense") is None
    assert Usage.from_detail({"cost_usd": -3}) == Usage()
