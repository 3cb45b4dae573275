"""Every CLI we ship a profile for completes runs for real: the real CLI, installed from npm
at the profile's `checked_version`, driven by `device-agent run --once` against the dev
server, its model API a loopback stub that makes the model call the Lobu tools.

Per CLI (tests/realcli/scenario.py): an automation run the model completes in its first
round, one it completes only in the resume round the server asks for, and a watcher run.
What is asserted is what the dev server's MCP stand-in received — which tool, for which
run, with which bearer token — how the server settled each run, and what the device read
that each run cost from its CLI's own output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.realcli.clis import CLIS
from tests.realcli.conftest import Scenarios
from tests.realcli.stubs import WATCHER_ANSWER

pytestmark = [pytest.mark.realcli, pytest.mark.slow]

PROFILES = list(CLIS)
STATE_A_COST = {"claude-code", "opencode", "pi"}  # the others count tokens only

# The Gemini wiring this suite caught: the MCP config in a file named by
# GEMINI_CLI_SYSTEM_SETTINGS_PATH, which Gemini CLI skips unless root owns it and every
# folder above it.
OLD_GEMINI_WIRING = """
binary = "gemini"
prompt = "stdin"
args = ["--output-format", "json", "--skip-trust", "{mcp}"]
[mcp]
file = "private"
args = ["--allowed-mcp-server-names", "lobu"]
env = { GEMINI_CLI_SYSTEM_SETTINGS_PATH = "{mcp_config}" }
[mcp.config.mcpServers.lobu]
httpUrl = "{mcp_url}"
headers = { Authorization = "Bearer {mcp_token}" }
trust = true
[output]
reader = "json"
text = "response"
failed_if = ["error"]
error = ["error.message"]
stderr = true
"""


def tool_calls(outcome: dict[str, Any], tool: str | None = None) -> list[dict[str, Any]]:
    return [
        call
        for call in outcome["mcp_calls"]
        if call["method"] == "tools/call" and (tool is None or call["tool"] == tool)
    ]


def completions_of(outcome: dict[str, Any], run_id: int) -> list[dict[str, Any]]:
    return [
        call
        for call in tool_calls(outcome, "run_sdk")
        if call["arguments"].get("method") == "automations.completeWindow"
        and call["arguments"].get("params", {}).get("run_id") == run_id
    ]


def explain(run: dict[str, Any]) -> str:
    """What to look at when a run did not go as expected."""
    return (
        f"run {run['run_id']}: {run['status']} ({run['reason_code']}), output {run['output']!r}, "
        f"error {run['error']!r}\ndevice-agent said:\n{run['agent']['stderr'][-3000:]}"
    )


@pytest.mark.parametrize("profile", PROFILES)
def test_an_automation_run_is_completed_through_mcp_with_its_session_token(
    scenarios: Scenarios, profile: str
) -> None:
    result = scenarios.result(profile)
    assert result["uid"] != 0  # the CLI ran as an ordinary user
    outcome = result["lanes"]["automation"]
    run = outcome["runs"][0]
    assert run["status"] == "completed", explain(run)
    assert run["rounds"] == 1
    assert run["windows_completed"] == [{"summary": "ok"}]
    completed = completions_of(outcome, run["run_id"])
    assert len(completed) == 1
    assert completed[0]["token"] == run["session_token"]
    assert run["session_token"] != outcome["device_token"]
    read = tool_calls(outcome, "query_sdk")  # the contract's first step, the second tool
    assert read
    assert read[0]["token"] == run["session_token"]
    # Nothing reached the MCP server with the device token, nor without a token.
    tokens = {call["token"] for call in outcome["mcp_calls"]}
    assert tokens <= {r["session_token"] for r in outcome["runs"]}


@pytest.mark.parametrize("profile", PROFILES)
def test_a_run_the_model_does_not_complete_at_first_is_completed_in_a_resume_round(
    scenarios: Scenarios, profile: str
) -> None:
    outcome = scenarios.result(profile)["lanes"]["automation"]
    run = outcome["runs"][1]
    assert run["status"] == "completed", explain(run)
    assert run["rounds"] == 2
    completed = completions_of(outcome, run["run_id"])
    assert len(completed) == 1
    assert completed[0]["token"] == run["session_token"]


@pytest.mark.parametrize("profile", PROFILES)
def test_a_watcher_run_answers_with_the_cli_output_and_its_tool_call_goes_through(
    scenarios: Scenarios, profile: str
) -> None:
    outcome = scenarios.result(profile)["lanes"]["watcher"]
    run = outcome["runs"][0]
    assert run["status"] == "completed", explain(run)
    assert run["output"].strip() == WATCHER_ANSWER, explain(run)
    calls = tool_calls(outcome, "query_sdk")
    assert len(calls) == 1, explain(run)
    # Through the run's loopback proxy, which holds the device token; the CLI never does.
    assert calls[0]["token"] == outcome["device_token"]


@pytest.mark.parametrize("profile", PROFILES)
def test_no_token_is_ever_in_the_users_workdir_while_the_cli_runs(
    scenarios: Scenarios, profile: str
) -> None:
    result = scenarios.result(profile)
    secrets = {"dap_run_"}  # the proxy secret's prefix
    for outcome in result["lanes"].values():
        secrets.add(outcome["device_token"])
        secrets.update(r["session_token"] for r in outcome["runs"] if r["session_token"])
    snapshots = result["workdir_snapshots"]
    assert snapshots  # taken while the CLI was asking the model
    leaks = [
        name
        for files in snapshots
        for name, text in files.items()
        if any(secret in text for secret in secrets)
    ]
    assert leaks == []


def test_gemini_as_an_ordinary_user_skips_a_system_settings_file_it_does_not_trust(
    scenarios: Scenarios,
) -> None:
    """The sandbox reproduces the rule the old wiring fell foul of: the suite would catch
    it again."""
    result = scenarios.result("gemini", ("watcher",), profile_override=OLD_GEMINI_WIRING)
    assert result["uid"] != 0
    outcome = result["lanes"]["watcher"]
    run = outcome["runs"][0]
    assert tool_calls(outcome) == []
    assert run["output"].startswith("NO LOBU TOOL"), explain(run)


@pytest.mark.parametrize("profile", PROFILES)
def test_what_each_run_cost_is_read_from_the_real_cli_s_own_stream(
    scenarios: Scenarios, profile: str
) -> None:
    """The daily limit's figures (issue 23) come from the stream the profile asks for: the
    tokens the model stub counted, in and out, for every round; a dollar cost from the CLIs
    that state one (a stub model may cost nothing), none from those that do not."""
    result = scenarios.result(profile)
    for outcome in result["lanes"].values():
        for run in outcome["runs"]:
            usage = run["usage"]
            assert usage is not None, explain(run)
            assert "history_failed" not in usage, usage
            assert usage["rounds"] == run["rounds"], usage
            assert usage["tokens_in"] > 0, usage
            assert usage["tokens_out"] > 0, usage
            if profile in STATE_A_COST:
                assert usage["cost_usd"] is not None, usage
                assert not usage["cost_partial"], usage
            else:
                assert usage["cost_usd"] is None, usage


def test_doctor_finds_each_real_cli_at_the_version_its_profile_was_checked_against(
    real_clis: dict[str, Path], tmp_path: Path
) -> None:
    path = os.pathsep.join([*map(str, real_clis.values()), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "HOME": str(tmp_path), "DEVICE_AGENT_HOME": str(tmp_path)}
    env.pop("DEVICE_AGENT_SERVER", None)
    shown = subprocess.run(
        [sys.executable, "-m", "device_agent", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    ).stdout
    for profile, cli in CLIS.items():
        line = next(x for x in shown.splitlines() if f" {profile!r}:" in x or f" {profile}:" in x)
        assert line.startswith("[ok  ]"), line
        assert f"profile checked against {cli.version})" in line, line
