"""The bundled offline demo agent, run through its shipped profile."""

from __future__ import annotations

from device_agent.demo.watcher_cli import summarize
from device_agent.lanes.watcher.prompt import build_prompt
from tests.executors.conftest import Bench
from tests.executors.test_prompt import run as sample_run


def test_demo_profile_runs_offline_and_answers_like_claude(bench: Bench) -> None:
    prompt = build_prompt(sample_run())
    result = bench.run("demo", prompt=prompt, config={"model": "m1"})
    assert result.exit_reason == "ok", result.error
    assert "Issue digest" in result.output
    assert "2026-05-17T00:00:00.000Z to 2026-05-18T00:00:00.000Z" in result.output
    assert result.details["cost_usd"] == 0
    assert result.details["num_turns"] == 1
    assert result.details["session_id"].startswith("demo-")
    assert result.details["ignored_options"] == ["model"]


def test_summary_without_context_still_reads_well() -> None:
    text = summarize("just a task")
    assert "this watcher" in text
    assert "its current window" in text
