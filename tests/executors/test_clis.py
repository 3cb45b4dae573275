"""Each shipped profile against a fake that mimics its CLI's output contract and failure shapes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tomllib
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from device_agent.executors.launch import toml_string
from device_agent.executors.profiles import load_profiles
from device_agent.executors.request import McpWiring
from device_agent.executors.transcript import ToolResult
from tests.executors.conftest import MCP_URL, TOKEN, Bench

SAMPLE_CONFIG = {
    "model": "m1",
    "max_budget_usd": 2,
    "permission_mode": "acceptEdits",
    "effort": "high",
    "timeout_seconds": 120,
}


# -------------------------------------------------------------- Claude Code


def test_claude_success_gives_result_and_details(bench: Bench) -> None:
    bench.install("claude")
    result = bench.run("claude-code")
    assert result.error is None
    assert result.exit_reason == "ok"
    assert result.exit_code == 0
    assert result.output == "Summary: Summarize what changed."
    assert result.details["cost_usd"] == 0.0421
    assert result.details["num_turns"] == 3
    assert result.details["session_id"] == "9f1c2d3e-0000-4000-8000-123456789abc"
    assert result.details["cli_usage"]["input_tokens"] == 1200  # what Claude printed, as is
    assert bench.reported()["prompt"].startswith("Summarize what changed.")  # on stdin


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("is_error", "Not logged in · Please run /login"),  # exit status 0: the JSON decides
        ("is_error_exit1", "API Error: 529 Overloaded"),
        ("max_turns", "Reached maximum number of turns (2)"),
    ],
)
def test_claude_is_error_fails_with_claudes_message(bench: Bench, mode: str, message: str) -> None:
    bench.install("claude")
    result = bench.run("claude-code", mode=mode)
    assert result.error == message
    assert result.exit_reason == "error_message"
    assert result.failed


def test_claude_unparseable_output_fails_with_its_tail(bench: Bench) -> None:
    bench.install("claude")
    result = bench.run("claude-code", mode="garbage")
    assert result.exit_reason == "error_message"
    assert result.error is not None
    assert "expected JSON lines" in result.error
    assert "Welcome to Claude Code! <html>not json</html>" in result.error


def test_claude_answer_is_the_result_event_of_its_stream(bench: Bench) -> None:
    """The stream holds messages before the result (thinking, a tool call and its result):
    the answer is the result's, and the thinking is nowhere in the transcript."""
    bench.install("claude")
    result = bench.run("claude-code")
    assert result.output == "Summary: Summarize what changed."
    assert result.transcript is not None
    assert [type(step).__name__ for step in result.transcript.steps] == [
        "Text",
        "ToolUse",
        "ToolResult",
        "Text",
    ]
    assert "The user wants a summary." not in repr(result.transcript)


def test_claude_argv_maps_execution_config(bench: Bench) -> None:
    bench.install("claude")
    result = bench.run("claude-code", config=SAMPLE_CONFIG, mcp=False)
    assert result.exit_reason == "ok"
    assert bench.reported()["argv"][1:] == [
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--model",
        "m1",
        "--max-budget-usd",
        "2",
        "--permission-mode",
        "acceptEdits",
        "--effort",
        "high",
    ]


def test_claude_is_allowed_exactly_the_lobu_tools_wherever_they_are_wired(bench: Bench) -> None:
    bench.install("claude")
    assert bench.run("claude-code").exit_reason == "ok"
    argv = bench.reported()["argv"]
    assert argv[-5:] == [
        "--mcp-config",
        argv[-4],
        "--strict-mcp-config",
        "--allowedTools",
        "mcp__lobu__query_sdk,mcp__lobu__run_sdk",
    ]


def test_the_fake_claude_denies_a_lobu_tool_its_argv_does_not_allow(bench: Bench) -> None:
    # The rule the fake models (`claude -p` has nobody to ask): without --allowedTools a
    # wired MCP tool is denied, so a test with the fake sees what the real CLI would do.
    bench.install("claude")
    bench.profile(
        "claude-code",
        """
binary = "claude"
args = ["-p", "--output-format", "stream-json", "--verbose", "{mcp}"]
[mcp]
file = "private"
args = ["--mcp-config", "{mcp_config}", "--strict-mcp-config"]
[mcp.config.mcpServers.lobu]
type = "http"
url = "{mcp_url}"
headers = { Authorization = "Bearer {mcp_token}" }
[output]
reader = "jsonl"
transcript = "claude-code"
final = { type = "result" }
text = "result"
""",
    )
    result = bench.run("claude-code", mode="lobu_tool")
    assert result.output == "Permission to use mcp__lobu__query_sdk was denied."
    assert result.transcript is not None
    refused = [s for s in result.transcript.steps if isinstance(s, ToolResult) and s.is_error]
    assert len(refused) == 1  # the tool result is the denial, as the real stream shows it


# ------------------------------------------------------------------- Gemini


def test_gemini_success(bench: Bench) -> None:
    bench.install("gemini")
    result = bench.run("gemini")
    assert result.exit_reason == "ok"
    assert result.output == "Gemini did: Summarize what changed."
    assert result.details["session_id"] == "52bf10c2-376c-4a38-8ef6-79cb4be7b38d"
    assert "models" in result.details["stats"]


def test_gemini_failure_before_the_stream_is_its_stderr_and_exit_41(bench: Bench) -> None:
    bench.install("gemini")
    result = bench.run("gemini", mode="auth_error")
    assert result.exit_code == 41
    assert result.exit_reason == "error_message"
    assert result.error is not None
    assert result.error.startswith("gemini exited with status 41: Please set an Auth method")


def test_gemini_error_result_event_fails_with_its_message(bench: Bench) -> None:
    bench.install("gemini")
    result = bench.run("gemini", mode="api_error")
    assert result.exit_code == 1
    assert result.error == "[API Error: quota exceeded]"
    assert result.details["error_type"] == "ApiError"


def test_gemini_answer_streamed_in_pieces_is_whole(bench: Bench) -> None:
    bench.install("gemini")
    result = bench.run("gemini")
    assert result.output == "Gemini did: Summarize what changed."
    assert result.transcript is not None
    assert [step.text for step in result.transcript.steps] == [  # type: ignore[union-attr]
        "Gemini did: Summarize what changed."
    ]


def test_gemini_argv_translates_permission_mode_and_drops_unsupported_keys(bench: Bench) -> None:
    bench.install("gemini")
    result = bench.run("gemini", config=SAMPLE_CONFIG, mcp=False)
    assert result.exit_reason == "ok"
    assert bench.reported()["argv"][1:] == [
        "--output-format",
        "stream-json",
        "--skip-trust",
        "--model",
        "m1",
        "--approval-mode",
        "auto_edit",
    ]
    assert set(result.details["ignored_options"]) == {"max_budget_usd", "effort"}


def test_gemini_mcp_settings_are_a_private_homes_outside_the_workdir_and_removed(
    bench: Bench,
) -> None:
    bench.install("gemini")
    result = bench.run("gemini")
    assert result.exit_reason == "ok"
    seen = bench.reported()
    assert seen["mcp_servers"] == ["lobu"]  # the fake reads settings the way Gemini CLI does
    assert seen["settings_scope"] == "user"
    assert seen["warnings"] == []
    assert seen["project_settings"] is None
    settings = seen["settings"]
    home = Path(seen["env"]["GEMINI_CLI_HOME"])
    assert Path(settings["path"]) == home / ".gemini" / "settings.json"
    assert not home.is_relative_to(Path(seen["cwd"]))
    assert not home.is_relative_to(bench.home)
    assert settings["mode"] == "0o600"
    assert settings["dir_mode"] == "0o700"
    assert settings["content"]["mcpServers"]["lobu"]["httpUrl"] == MCP_URL
    assert settings["content"]["mcpServers"]["lobu"]["headers"]["Authorization"].startswith(
        "Bearer "
    )
    assert not home.exists()  # removed with the run
    assert seen["argv"][-2:] == ["--allowed-mcp-server-names", "lobu"]


def test_gemini_keeps_the_users_own_settings_and_login(bench: Bench) -> None:
    bench.install("gemini")
    own = bench.home / ".gemini"
    own.mkdir()
    theirs = (
        "{\n  // the user's own, with comments, as Gemini CLI allows\n"
        '  "security": {"auth": {"selectedType": "oauth-personal"}},\n'
        '  /* their own servers */ "mcpServers": {"mine": {"command": "x // not a comment"}}\n}'
    )
    (own / "settings.json").write_text(theirs)
    (own / "oauth_creds.json").write_text('{"refresh_token": "theirs"}')
    result = bench.run("gemini")
    assert result.exit_reason == "ok"
    seen = bench.reported()
    content = seen["settings"]["content"]
    assert content["security"] == {"auth": {"selectedType": "oauth-personal"}}
    assert set(content["mcpServers"]) == {"mine", "lobu"}
    assert content["mcpServers"]["mine"] == {"command": "x // not a comment"}
    assert seen["mcp_servers"] == ["lobu"]  # --allowed-mcp-server-names
    linked = seen["gemini_home"]
    assert linked["oauth_creds.json"] == str(own / "oauth_creds.json")  # their login, linked
    assert linked["settings.json"] == "file"  # the run's own copy
    assert (own / "settings.json").read_text() == theirs  # never written to
    assert (own / "oauth_creds.json").read_text() == '{"refresh_token": "theirs"}'  # kept


def test_gemini_is_left_to_report_users_settings_it_cannot_read(bench: Bench) -> None:
    """Settings that are no JSON object break Gemini CLI with or without the Lobu tools:
    the run is not wired, and fails with Gemini's own words about that file."""
    bench.install("gemini")
    (bench.home / ".gemini").mkdir()
    (bench.home / ".gemini" / "settings.json").write_text("[1, 2]")
    with capture_logs() as logs:
        result = bench.run("gemini")
    assert result.details["mcp"] is False
    assert result.error is not None
    assert "settings.json" in result.error
    assert "GEMINI_CLI_HOME" not in bench.reported()["env"]
    assert any("cannot add the Lobu tools" in line["event"] for line in logs)


def test_gemini_skips_a_system_settings_file_root_does_not_own(bench: Bench) -> None:
    """The rule the fake shares with Gemini CLI 0.61: the wiring this profile used before."""
    bench.install("gemini")
    settings = bench.root / "system.json"
    settings.write_text(json.dumps({"mcpServers": {"lobu": {"httpUrl": MCP_URL}}}))
    bench.environ["GEMINI_CLI_SYSTEM_SETTINGS_PATH"] = str(settings)
    result = bench.run("gemini", mcp=False)
    assert result.exit_reason == "ok"
    seen = bench.reported()
    assert seen["mcp_servers"] == []
    assert seen["warnings"][0].startswith("Security Warning: Skipping system settings file")


def test_gemini_never_touches_settings_in_a_configured_workdir(bench: Bench) -> None:
    bench.install("gemini")
    workdir = bench.root / "work"
    settings = workdir / ".gemini" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text('{"theme": "mine"}')
    result = bench.run("gemini", executor=bench.executor(workdir=workdir))
    assert result.exit_reason == "ok"
    assert settings.read_text() == '{"theme": "mine"}'
    assert result.details["mcp"] is True  # the Lobu tools come from outside the workdir
    assert workdir.is_dir()  # a configured workdir is the user's: never removed


# -------------------------------------------------------------------- Codex


def test_codex_final_agent_message_is_the_output(bench: Bench) -> None:
    bench.install("codex")
    result = bench.run("codex")
    assert result.exit_reason == "ok", result.error
    assert result.output == "Codex wrote the digest."
    assert result.details["session_id"] == "01a21c4f-4520-7881-8612-8af118f7b615"
    assert result.details["cli_usage"]["output_tokens"] == 180


def test_codex_stream_without_final_message_fails_clearly(bench: Bench) -> None:
    bench.install("codex")
    result = bench.run("codex", mode="no_final")
    assert result.exit_code == 0
    assert result.exit_reason == "error_message"
    assert result.error is not None
    assert "ended without a final message" in result.error
    assert "'turn.completed'" in result.error


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("turn_failed", "stream disconnected before completion"),
        ("error_last", "unexpected status 401 Unauthorized: Missing bearer"),
    ],
)
def test_codex_failure_events_fail_with_their_message(
    bench: Bench, mode: str, message: str
) -> None:
    bench.install("codex")
    result = bench.run("codex", mode=mode)
    assert result.exit_reason == "error_message"
    assert result.error == message


def test_codex_argv_and_mcp_token_only_in_its_env_var(bench: Bench) -> None:
    bench.install("codex")
    result = bench.run("codex", config=SAMPLE_CONFIG)
    assert result.exit_reason == "ok"
    seen = bench.reported()
    assert seen["argv"][1:] == [
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--color",
        "never",
        "--model",
        "m1",
        "-c",
        'model_reasoning_effort="high"',
        "--sandbox",
        "workspace-write",
        "-c",
        f'mcp_servers.lobu.url="{MCP_URL}"',
        "-c",
        'mcp_servers.lobu.bearer_token_env_var="LOBU_MCP_TOKEN"',
        "-c",
        'mcp_servers.lobu.tools.query_sdk.approval_mode="approve"',
        "-c",
        'mcp_servers.lobu.tools.run_sdk.approval_mode="approve"',
        "-",
    ]
    assert seen["env"]["LOBU_MCP_TOKEN"] == TOKEN
    assert [name for name, value in seen["env"].items() if TOKEN in value] == ["LOBU_MCP_TOKEN"]


# ----------------------------------------------------------------- OpenCode


def test_opencode_last_text_event_is_the_output(bench: Bench) -> None:
    bench.install("opencode")
    result = bench.run("opencode")
    assert result.exit_reason == "ok"
    assert result.output == "OpenCode found two new items."
    assert result.details["session_id"] == "ses_de3afb5bdffeBGShrtGMdKoyNa"


def test_opencode_error_event(bench: Bench) -> None:
    bench.install("opencode")
    result = bench.run("opencode", mode="error")
    assert result.exit_code == 1
    assert result.error == "No API key for provider anthropic"


def test_opencode_mcp_through_config_content(bench: Bench) -> None:
    bench.install("opencode")
    executor = bench.executor(allowed_permission_modes=("bypassPermissions",))
    config = {"permission_mode": "bypassPermissions"}
    result = bench.run("opencode", executor=executor, config=config)
    assert result.exit_reason == "ok"
    seen = bench.reported()
    assert seen["argv"][1:] == ["run", "--format", "json", "--auto"]
    config = json.loads(seen["env"]["OPENCODE_CONFIG_CONTENT"])
    assert config["mcp"]["lobu"]["type"] == "remote"
    assert config["mcp"]["lobu"]["url"] == MCP_URL
    # `opencode run` refuses a tool it would have to ask about: the Lobu tools, and only
    # they, are allowed whatever the user's own "*" rule says.
    assert config["permission"] == {"lobu_*": "allow"}


def test_pi_reaches_the_lobu_tools_through_its_environment(bench: Bench) -> None:
    bench.install("pi")
    result = bench.run("pi")
    assert result.exit_reason == "ok"
    env = bench.reported()["env"]
    assert env["LOBU_MEMORY_URL"] == MCP_URL
    assert env["LOBU_API_TOKEN"] == TOKEN  # the run's proxy secret in a real run


# --------------------------------------------------------- execution_config


def test_invalid_permission_mode_is_rejected_before_starting(bench: Bench) -> None:
    bench.install("claude")
    result = bench.run("claude-code", config={"permission_mode": "yolo"})
    assert result.exit_reason == "error_message"
    assert result.error == (
        "execution_config.permission_mode must be one of "
        "acceptEdits, auto, bypassPermissions, default, dontAsk, plan, got 'yolo'"
    )
    assert not bench.report_path.exists()  # the CLI never ran


BUDGET = (
    "execution_config.max_budget_usd must be a number of US dollars greater than 0 "
    "and at most 1000000000"
)
TIMEOUT = "execution_config.timeout_seconds must be a number of seconds from 1 to 86400"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"max_budget_usd": "lots"}, f"{BUDGET}, got 'lots'"),
        ({"max_budget_usd": -1}, f"{BUDGET}, got -1"),
        ({"max_budget_usd": True}, f"{BUDGET}, got True"),
        ({"effort": "extreme"}, "execution_config.effort must be one of low, medium, high"),
        ({"model": "--dangerously-skip-permissions"}, "execution_config.model"),
        ({"model": "two words"}, "execution_config.model"),
        ({"timeout_seconds": 0}, "execution_config.timeout_seconds must be a number of seconds"),
        (
            {"timeout_seconds": 86401},
            "execution_config.timeout_seconds must be a number of seconds",
        ),
        ({"timeout_seconds": "10"}, "execution_config.timeout_seconds must be a number of seconds"),
    ],
)
def test_invalid_values_fail_clearly(
    bench: Bench, config: dict[str, object], expected: str
) -> None:
    bench.install("claude")
    result = bench.run("claude-code", config=config)
    assert result.exit_reason == "error_message"
    assert result.error is not None
    assert result.error.startswith(expected)
    assert not bench.report_path.exists()


def test_unknown_and_unsupported_keys_are_ignored_not_passed(bench: Bench) -> None:
    bench.install("codex")
    result = bench.run(
        "codex",
        config={"max_budget_usd": 5, "permission_mode": "dontAsk", "colour": "blue", "model": None},
        mcp=False,
    )
    assert result.exit_reason == "ok"
    argv = bench.reported()["argv"]
    assert argv[1:] == ["exec", "--json", "--skip-git-repo-check", "--color", "never", "-"]
    assert set(result.details["ignored_options"]) == {
        "max_budget_usd",
        "colour",
        "permission_mode=dontAsk",
    }


# ------------------------------------------------ the owner's consent (issue 8)

WIDENING = [
    ("claude-code", "claude", "bypassPermissions"),
    ("claude-code", "claude", "auto"),
    ("codex", "codex", "bypassPermissions"),
    ("gemini", "gemini", "bypassPermissions"),
    ("opencode", "opencode", "bypassPermissions"),
]


@pytest.mark.parametrize(("kind", "fake", "mode"), WIDENING)
def test_a_mode_the_owner_has_not_allowed_fails_before_starting(
    bench: Bench, kind: str, fake: str, mode: str
) -> None:
    bench.install(fake)
    result = bench.run(kind, config={"permission_mode": mode})
    assert result.exit_reason == "error_message"
    assert result.error is not None
    assert f"permission_mode {mode!r} is not allowed on this device" in result.error
    assert "[executor] allowed_permission_modes" in result.error
    assert not bench.report_path.exists()  # the CLI never ran


@pytest.mark.parametrize("mode", ["default", "acceptEdits", "plan", "dontAsk"])
def test_the_safe_modes_need_no_consent(bench: Bench, mode: str) -> None:
    bench.install("claude")
    result = bench.run("claude-code", config={"permission_mode": mode})
    assert result.exit_reason == "ok"


@pytest.mark.parametrize(
    "config",
    [
        {"max_budget_usd": float("nan")},
        {"max_budget_usd": float("inf")},
        {"max_budget_usd": 1e308},
        {"model": 1e308},
        {"model": 7},
        {"model": ["opus"]},
    ],
)
def test_numbers_that_are_not_sane_and_models_that_are_not_strings_are_refused(
    bench: Bench, config: dict[str, object]
) -> None:
    bench.install("claude")
    result = bench.run("claude-code", config=config)
    assert result.exit_reason == "error_message"
    assert result.error is not None
    assert result.error.startswith("execution_config.")
    assert not bench.report_path.exists()


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"timeout_seconds": float("nan")}, f"{TIMEOUT}, got nan"),
        ({"timeout_seconds": float("inf")}, f"{TIMEOUT}, got inf"),
        ({"timeout_seconds": -1}, f"{TIMEOUT}, got -1"),
        ({"timeout_seconds": 86400.5}, f"{TIMEOUT}, got 86400.5"),
        ({"timeout_seconds": "600"}, f"{TIMEOUT}, got '600'"),
        ({"timeout_seconds": False}, f"{TIMEOUT}, got False"),
        ({"max_budget_usd": float("nan")}, f"{BUDGET}, got nan"),
        ({"max_budget_usd": float("-inf")}, f"{BUDGET}, got -inf"),
        ({"max_budget_usd": 0}, f"{BUDGET}, got 0"),
        ({"max_budget_usd": 1e10}, f"{BUDGET}, got 10000000000.0"),
        ({"model": 7}, "execution_config.model must be a string, got 7"),
    ],
)
def test_a_bad_execution_config_value_fails_the_run_in_one_line_naming_key_and_unit(
    bench: Bench, config: dict[str, object], error: str
) -> None:
    """The same declarations as the config file's (device_agent/schema.py): the run fails
    before its CLI starts, with the key, what it must be (its unit) and what came."""
    bench.install("claude")
    result = bench.run("claude-code", config=config)
    assert result.exit_reason == "error_message"
    assert result.error == error
    assert not bench.report_path.exists()


# ------------------------------------------- a URL inside a CLI's config (issue 21, point 13)


@pytest.mark.parametrize("text", ["http://127.0.0.1:1/mcp", 'a"b', "a\\b", "\x00\x1b\x7f\n", "é😀"])
def test_toml_string_reads_back_as_the_same_text(text: str) -> None:
    assert tomllib.loads(f"key = {toml_string(text)}")["key"] == text


def test_codex_reads_the_mcp_url_from_a_toml_string_the_agent_quoted(bench: Bench) -> None:
    bench.install("codex")
    assert bench.run("codex").exit_reason == "ok"
    argv = bench.reported()["argv"]
    overrides = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-c"]
    url_option = next(value for value in overrides if value.startswith("mcp_servers.lobu.url="))
    assert tomllib.loads(url_option) == {"mcp_servers": {"lobu": {"url": MCP_URL}}}


def test_codex_profile_writes_the_url_through_the_toml_placeholder() -> None:
    codex = load_profiles()["codex"]
    assert codex.mcp is not None
    assert "mcp_servers.lobu.url={mcp_url_toml}" in codex.mcp.args


@pytest.mark.parametrize("bad", ["\x7f", "\x1b[31m", "\x00"])
def test_a_control_character_in_an_mcp_url_is_refused_before_any_cli_starts(
    bench: Bench, bad: str
) -> None:
    bench.install("codex")
    request = dataclasses.replace(
        bench.request("codex"), mcp=McpWiring(url=f"{MCP_URL}{bad}", token=TOKEN)
    )
    result = asyncio.run(bench.executor().execute(request, cancel=asyncio.Event()))
    assert result.failed
    assert "is not a plain http(s) URL" in (result.error or "")
    assert not bench.report_path.exists()  # the CLI never ran
