"""The pi and agy executor profiles against fakes of their print modes."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_agent.executors.profiles import load_profiles
from tests.executors.conftest import TOKEN, Bench

SAMPLE_CONFIG = {
    "model": "m1",
    "max_budget_usd": 2,
    "permission_mode": "bypassPermissions",
    "effort": "high",
    "timeout_seconds": 120,
}
BYPASS_FLAGS = ("--dangerously-skip-permissions", "--yolo", "yolo", "--auto")


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return Bench(tmp_path)


# ---------------------------------------------------------------------- pi


def test_pi_success_is_the_text_of_its_last_assistant_message(bench: Bench) -> None:
    bench.install("pi")
    result = bench.run("pi")
    assert result.exit_reason == "ok"
    assert result.error is None
    assert result.output == "Pi did: Summarize what changed."
    assert result.details["session_id"] == "01a25341-6a85-703f-82ed-7d09f42546a7"
    assert bench.reported()["prompt"].startswith("Summarize what changed.")  # on stdin


def test_pi_streamed_updates_are_not_kept_so_a_long_answer_survives_the_cap(
    bench: Bench,
) -> None:
    """Every message_update repeats the answer so far: kept, 20,000 characters streamed 8 at
    a time would be some 50 MB of stdout, far past a 256 KiB cap."""
    bench.install("pi")
    executor = bench.executor(stdout_cap_bytes=256 * 1024)
    result = bench.run("pi", executor=executor, mode="long")
    assert result.error is None
    assert len(result.output) == 20_000
    assert "stdout_truncated" not in result.details


def test_pi_argv_maps_model_and_effort_and_ignores_the_rest(bench: Bench) -> None:
    bench.install("pi")
    result = bench.run("pi", config=SAMPLE_CONFIG, mcp=False)
    assert result.exit_reason == "ok"
    assert bench.reported()["argv"][1:] == [
        "-p",
        "--mode",
        "json",
        "--no-session",
        "--tools",
        "read,bash,edit,write",
        "--model",
        "m1",
        "--thinking",
        "high",
    ]


def test_pi_failure_before_the_run_is_its_stderr_and_exit_status(bench: Bench) -> None:
    bench.install("pi")
    result = bench.run("pi", mode="no_api_key")
    assert result.exit_code == 1
    assert result.exit_reason == "error_message"
    assert result.error is not None
    assert "No API key found for the selected model." in result.error


def test_pi_model_error_fails_the_run_though_pi_exits_0(bench: Bench) -> None:
    bench.install("pi")
    result = bench.run("pi", mode="model_error")
    assert result.exit_code == 0
    assert result.exit_reason == "error_message"
    assert result.error == (
        "429 rate_limit_error: Number of request tokens has exceeded your rate limit"
    )


# --------------------------------------------------------------------- agy


def test_agy_success_with_the_prompt_as_the_p_value(bench: Bench) -> None:
    bench.install("agy")
    result = bench.run("agy")
    assert result.exit_reason == "ok"
    assert result.output.strip() == "agy did: Summarize what changed."
    assert bench.reported()["argv"][1:3] == [
        "-p",
        "Summarize what changed.\n\n---\n\nWatcher: Daily digest\n",
    ]


def test_agy_argv_maps_model_and_effort(bench: Bench) -> None:
    bench.install("agy")
    result = bench.run("agy", config=SAMPLE_CONFIG, mcp=False)
    assert result.exit_reason == "ok"
    assert bench.reported()["argv"][3:] == ["--model", "m1", "--effort", "high"]


def test_agy_failure_is_its_stderr_and_exit_status(bench: Bench) -> None:
    bench.install("agy")
    result = bench.run("agy", mode="error")
    assert result.exit_code == 1
    assert result.exit_reason == "error_message"
    assert result.error is not None
    assert "not signed in" in result.error


# ----------------------------------------------------------------- both


@pytest.mark.parametrize("kind", ["pi", "agy"])
def test_no_permission_bypass_even_when_the_server_asks_for_one(bench: Bench, kind: str) -> None:
    bench.install(kind)
    bench.run(kind, config=SAMPLE_CONFIG)
    argv = bench.reported()["argv"]
    assert not set(argv) & set(BYPASS_FLAGS)
    assert TOKEN not in " ".join(argv)


@pytest.mark.parametrize("kind", ["pi", "agy"])
def test_the_shipped_profile_has_no_bypass_anywhere(kind: str) -> None:
    profile = load_profiles()[kind]
    text = profile.source.read_text(encoding="utf-8")
    flags = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not any(flag in line for line in flags for flag in BYPASS_FLAGS)
    assert "permission_mode" not in profile.options
