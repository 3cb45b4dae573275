"""Process control: groups, timeouts, grandchildren, output caps, crashes, cancellation."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from device_agent.agent.result import ExitReason, Report
from device_agent.config import ExecutorSettings
from device_agent.executors.executor import CancelEvent, Executor
from device_agent.executors.process import LineFilter
from tests.executors.conftest import Bench
from tests.support.processes import live_members
from tests.support.waiting import wait_for, wait_for_async

MIB = 1 << 20

# A hanging CLI that is also handed an MCP config, to see that file go when the run is killed.
HANG_PROFILE = """
binary = "hang"
args = ["{mcp}"]
[mcp]
file = "private"
args = ["--mcp-config", "{mcp_config}"]
[mcp.config.mcpServers.lobu]
url = "{mcp_url}"
headers = { Authorization = "Bearer {mcp_token}" }
"""


@pytest.fixture
def hang(bench: Bench) -> Bench:
    bench.install("hang")
    bench.profile("hang", HANG_PROFILE)
    return bench


def mcp_path(bench: Bench) -> Path:
    argv = bench.reported()["argv"]
    return Path(argv[argv.index("--mcp-config") + 1])


def test_timeout_terms_then_kills_the_whole_group(hang: Bench) -> None:
    # Leader and grandchild both ignore SIGTERM: only the SIGKILL after the grace ends them.
    started = time.monotonic()
    result = hang.run("hang", mode="hang_ignore_term", config={"timeout_seconds": 1})
    elapsed = time.monotonic() - started
    seen = hang.reported()
    assert result.exit_reason == "timeout"
    assert result.exit_signal == "SIGKILL"
    assert result.exit_code is None
    assert result.error is not None
    assert result.error.startswith("timed out after 1 s")
    assert json.loads(result.output)["grandchild"] == seen["grandchild"]  # output kept
    assert seen["pgid"] == seen["pid"] == seen["sid"]  # its own session and group
    assert live_members(seen["pgid"]) == []  # grandchild included, at once
    assert not mcp_path(hang).exists()
    assert elapsed >= 1  # the timeout, not an early end


@pytest.mark.parametrize("mode", ["exit_early", "exit_early_holding_pipe"])
def test_a_grandchild_left_behind_dies_with_the_run(hang: Bench, mode: str) -> None:
    result = hang.run("hang", mode=mode)
    seen = hang.reported()
    assert result.exit_reason == "ok"
    assert result.exit_code == 0
    assert live_members(seen["pgid"]) == []
    assert not mcp_path(hang).exists()


def test_cancel_kills_the_group_and_says_why(hang: Bench) -> None:
    hang.environ["FAKE_MODE"] = "hang"
    executor = hang.executor()

    async def scenario() -> Report:
        cancel = CancelEvent()
        run = asyncio.create_task(executor.execute(hang.request("hang"), cancel=cancel))
        await wait_for_async(hang.report_path.exists)
        cancel.cancel("heartbeat answered 409: run is not in progress")
        return await run

    result = asyncio.run(scenario())
    assert result.exit_reason == "cancelled"
    assert result.error == "run cancelled: heartbeat answered 409: run is not in progress"
    assert result.exit_signal == "SIGTERM"
    assert live_members(hang.reported()["pgid"]) == []
    assert not mcp_path(hang).exists()


def test_cancel_with_a_plain_event_and_before_start(hang: Bench) -> None:
    executor = hang.executor()
    cancel = asyncio.Event()
    cancel.set()
    result = asyncio.run(executor.execute(hang.request("hang"), cancel=cancel))
    assert result.exit_reason == "cancelled"
    assert result.error == "run cancelled: stopped by the device agent"
    assert not hang.report_path.exists()  # never started


def test_cancelling_the_calling_task_kills_the_group_first(hang: Bench) -> None:
    hang.environ["FAKE_MODE"] = "hang"
    executor = hang.executor()

    async def scenario() -> None:
        run = asyncio.create_task(executor.execute(hang.request("hang"), cancel=asyncio.Event()))
        await wait_for_async(hang.report_path.exists)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(scenario())
    wait_for(lambda: live_members(hang.reported()["pgid"]) == [], timeout=10)  # SIGKILL lands
    assert not mcp_path(hang).exists()


def test_100_mib_of_output_is_capped_and_memory_stays_bounded(bench: Bench) -> None:
    bench.install("flood")
    bench.profile("flood", 'binary = "flood"\n')
    executor = bench.executor()
    tracemalloc.start()
    try:
        result = bench.run("flood", executor=executor)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.details["stdout_bytes"] == 100 * MIB
    assert result.details["stdout_truncated"] is True
    assert result.details["stderr_truncated"] is True
    assert result.output.endswith("\n[output truncated]")
    assert len(result.output) == 4 * MIB + len("\n[output truncated]")
    assert peak < 32 * MIB, f"peak traced memory {peak / MIB:.1f} MiB"
    # The error text is the real end of stderr, even though stderr blew through its cap.
    assert result.exit_code == 3
    assert result.error is not None
    assert result.error.startswith("flood exited with status 3: ")
    assert result.error.endswith("fatal: out of widgets")


# A CLI whose one JSON answer (shaped like Claude Code's) is 200 KiB: over a 64 KiB cap.
BIG_ANSWER = """
import json, sys
sys.stdin.read()
print(json.dumps({"is_error": False, "result": "x" * 204800, "total_cost_usd": 0.5}))
"""


def test_a_json_answer_over_the_cap_is_said_to_be_cut_not_missing(bench: Bench) -> None:
    script = bench.root / "big_answer.py"
    script.write_text(BIG_ANSWER)
    bench.profile(
        "big-answer",
        f'binary = "{{python}}"\nargs = ["{script}"]\nprompt = "stdin"\n'
        '[output]\nreader = "json"\ntext = "result"\nfailed_if = ["is_error"]\n',
    )
    result = bench.run("big-answer", executor=bench.executor(stdout_cap_bytes=64 * 1024))
    assert result.error is not None
    assert "expected a JSON object" not in result.error
    assert (
        "its JSON answer passed the 65536-byte output cap ([executor] stdout_cap_bytes) and was "
        "cut inside its 'result' field"
    ) in result.error
    assert result.output == "x" * (64 * 1024 - len('{"is_error": false, "result": "'))
    assert result.details["stdout_truncated"] is True


@pytest.mark.parametrize("name", ["SIGSEGV", "SIGKILL"])
def test_killed_by_a_signal_is_a_crash(bench: Bench, name: str) -> None:
    bench.install("crash")
    bench.profile("crash", 'binary = "crash"\n')
    bench.environ["FAKE_SIGNAL"] = name
    result = bench.run("crash")
    assert result.exit_reason == "crash"
    assert result.exit_signal == name
    assert result.exit_code is None
    assert result.error == f"crash was killed by {name}; last output: segfault coming"
    assert result.output == "about to crash"


def test_missing_binary(bench: Bench) -> None:
    result = bench.run("claude-code")
    assert result.exit_reason == "error_message"
    assert result.error == "claude binary not found on PATH"


def test_unknown_agent_kind_fails_without_raising(bench: Bench) -> None:
    executor = bench.executor()
    assert not executor.has_profile("aider")
    result = bench.run("aider", executor=executor)
    assert result.error == "no local agent executor configured for agent_kind='aider'"


# ------------------------------------------------------------ prompt modes


def test_stdin_prompt(bench: Bench) -> None:
    bench.install("echo_prompt", "echo-prompt")
    bench.profile("command", 'argv = ["echo-prompt"]\n')
    executor = bench.executor()
    assert executor.has_profile("command")
    result = bench.run("command", executor=executor, prompt="hello on stdin")
    assert result.output == "[stdin] hello on stdin"
    assert bench.reported()["stdin_is_devnull"] is False


def test_the_cli_started_line_names_the_pid_the_cli_runs_as(bench: Bench) -> None:
    bench.install("echo_prompt", "echo-prompt")
    bench.profile("command", 'argv = ["echo-prompt"]\n')
    with capture_logs() as logged:
        bench.run("command", prompt="hello")
    (started,) = [line for line in logged if line["event"] == "CLI started"]
    assert started["pid"] == bench.reported()["pid"]
    assert started["argv"][0].endswith("echo-prompt")


def test_a_cli_that_cannot_start_leaves_no_started_line(bench: Bench) -> None:
    bench.profile("command", 'argv = ["/nonexistent/cli"]\n')
    with capture_logs() as logged:
        report = bench.run("command")
    assert report.failed
    assert [line for line in logged if line["event"] == "CLI started"] == []


def test_argument_prompt_closes_stdin_and_is_not_expanded(bench: Bench) -> None:
    bench.install("echo_prompt", "echo-prompt")
    bench.profile(
        "command", 'argv = ["echo-prompt", "--prompt", "{prompt}"]\nprompt = "argument"\n'
    )
    result = bench.run("command", prompt="-x {workdir} {mcp_token}")
    assert result.output == "[argument] -x {workdir} {mcp_token}"
    assert bench.reported()["stdin_is_devnull"] is True
    assert result.details["argv"][-1] == "<prompt: 24 characters>"


def test_file_prompt_is_private_and_removed(bench: Bench) -> None:
    bench.install("echo_prompt", "echo-prompt")
    bench.profile(
        "command", 'argv = ["echo-prompt", "--prompt-file", "{prompt_file}"]\nprompt = "file"\n'
    )
    result = bench.run("command", prompt="hello from a file")
    assert result.output == "[file] hello from a file"
    seen = bench.reported()["prompt_file"]
    assert (seen["mode"], seen["dir_mode"]) == ("0o600", "0o700")
    assert not Path(seen["path"]).exists()


def test_file_reader_takes_what_the_cli_wrote(bench: Bench) -> None:
    bench.install("echo_prompt", "echo-prompt")
    bench.profile(
        "command", 'argv = ["echo-prompt", "--out", "{output_file}"]\n[output]\nreader = "file"\n'
    )
    result = bench.run("command", prompt="last message")
    assert result.exit_reason == "ok"
    assert result.output == "[stdin] last message"


def test_text_profile_nonzero_exit_reports_the_tail(bench: Bench) -> None:
    bench.install("echo_prompt", "echo-prompt")
    bench.profile("command", 'argv = ["echo-prompt"]\n')
    bench.environ["FAKE_EXIT"] = "5"
    result = bench.run("command", prompt="x" * 600 + "THE END")
    assert result.exit_code == 5
    assert result.exit_reason == "error_message"
    assert result.error is not None
    assert result.error.startswith("echo-prompt exited with status 5: …")
    assert result.error.endswith("THE END")  # stderr was empty: the end of stdout
    assert len(result.error) < 600


def test_workdir_is_a_fresh_temp_dir_removed_afterwards(bench: Bench) -> None:
    bench.install("echo_prompt", "echo-prompt")
    bench.profile("command", 'argv = ["echo-prompt"]\n')
    bench.run("command")
    cwd = Path(bench.reported()["cwd"])
    assert cwd.name.startswith("device-agent-run-42-")
    assert not cwd.exists()
    result = bench.run("command", executor=bench.executor(keep_workdir=True))
    kept = Path(bench.reported()["cwd"])
    assert kept.is_dir()
    assert result.details["workdir"] == str(kept)
    shutil.rmtree(kept)


def test_a_background_tidy_returns_the_report_first_and_aclose_waits_for_the_removal(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A CLI that leaves a file in its workdir: the workdir is then removed off the loop.
    bench.profile("command", 'argv = ["{python}", "-c", "open(\'left.txt\', \'w\')"]\n')
    removing: list[Path] = []
    may_remove = threading.Event()
    real_rmtree = shutil.rmtree

    def held_rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        removing.append(Path(path))
        may_remove.wait(timeout=30)
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", held_rmtree)
    executor = Executor(
        ExecutorSettings(), bench.profiles(), environ=bench.environ, tidy_in_background=True
    )

    async def scenario() -> Path:
        report = await executor.execute(bench.request("command"), cancel=asyncio.Event())
        assert report.exit_reason is ExitReason.OK  # the report came back...
        await wait_for_async(lambda: bool(removing), what="the removal to start")
        assert await asyncio.to_thread((removing[0] / "left.txt").is_file)  # ...before this
        closing = asyncio.create_task(executor.aclose())
        await asyncio.sleep(0)
        assert not closing.done()  # and aclose() waits for the removal to end
        may_remove.set()
        await closing
        return removing[0]

    assert not asyncio.run(scenario()).exists()


@pytest.mark.parametrize("seed", range(20))
def test_skipped_lines_are_dropped_however_the_stream_is_cut(seed: int) -> None:
    stream = (
        b'{"type":"keep"}\n{"type":"message_update","p":"' + b"x" * 5000 + b'"}\n'
        b"plain\n\n"
        b'{"type":"mess\n'  # starts like a skipped line, but is not one
        b'{"type":"tool_execution_update"}\n'
        b'{"type":"agent_end"}'
    )
    pieces = random.Random(seed)
    skip = LineFilter([b'{"type":"message_update"', b'{"type":"tool_execution_update"'])
    kept, at = b"", 0
    while at < len(stream):
        size = pieces.randint(1, 64)
        kept += skip.feed(stream[at : at + size])
        at += size
    kept += skip.flush()
    assert kept == b'{"type":"keep"}\nplain\n\n{"type":"mess\n{"type":"agent_end"}'


def test_a_profiles_skipped_lines_never_count_against_the_stdout_cap(bench: Bench) -> None:
    bench.install("flood")
    bench.profile(
        "flooder",
        'binary = "flood"\n[output]\nreader = "text"\nskip_lines = ["xxxx"]\n',
    )
    result = bench.run("flooder", executor=bench.executor(stdout_cap_bytes=4096))
    assert "stdout_truncated" not in result.details
    assert result.details["stdout_bytes"] < 4096
