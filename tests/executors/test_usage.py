"""What a run cost, read from each CLI's own report (issue 23): the `usage` detail.

Each shipped profile runs its fake, which prints cost and tokens in its CLI's real
output shape (tests/fakes/); the readers are also checked against what a CLI could
print that is not a count.
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
        # input 1200 + cache writes 300 + cache reads 5000; the result's total_cost_usd
        ("claude-code", "claude", {"cost_usd": 0.0421, "tokens_in": 6500, "tokens_out": 340}),
        # Codex counts tokens (cached ones inside input_tokens) and states no cost
        ("codex", "codex", {"cost_usd": None, "tokens_in": 2400, "tokens_out": 180}),
        # prompt 900 + tool 30 in; candidates 120 + thoughts 40 out; no cost
        ("gemini", "gemini", {"cost_usd": None, "tokens_in": 930, "tokens_out": 160}),
        # two steps: 0.002 + 0.001; input + cache reads in, output + reasoning out
        ("opencode", "opencode", {"cost_usd": 0.003, "tokens_in": 2210, "tokens_out": 55}),
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


def test_pi_in_print_mode_reports_nothing_so_its_usage_is_unknown(bench: Bench) -> None:
    bench.install("pi")
    result = bench.run("pi")
    assert result.exit_reason == "ok"
    assert "usage" not in result.details  # nothing guessed: no cost, no tokens


def test_pi_in_json_mode_reports_cost_and_tokens(bench: Bench) -> None:
    bench.install("pi")
    bench.profile(
        "pi",
        'binary = "pi"\nargs = ["--mode", "json", "-p"]\n'
        '[output]\nreader = "jsonl"\nfinal = { type = "message_end" }\n'
        'text = "message.content.0.text"\n',
    )
    result = bench.run("pi")
    assert result.output == "Pi did: Summarize what changed."
    assert result.details["usage"] == {"cost_usd": 0.00282, "tokens_in": 2420, "tokens_out": 64}


def test_a_profile_of_the_user_s_own_is_read_by_its_binary(bench: Bench) -> None:
    bench.install("claude")
    bench.profile(
        "claude-opus",
        'binary = "claude"\nargs = ["-p", "--output-format", "json"]\n'
        '[output]\nreader = "json"\ntext = "result"\n',
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
