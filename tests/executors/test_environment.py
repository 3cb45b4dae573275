"""The child's environment and the secrets: what reaches a CLI, and what never does."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from device_agent.config import ExecutorSettings
from device_agent.executors.environment import child_environment, extended_path
from tests.executors.conftest import MCP_URL, TOKEN, Bench


def test_mcp_config_is_0600_while_the_run_lives_and_gone_after(bench: Bench) -> None:
    bench.install("claude")
    result = bench.run("claude-code", mode="mcp")
    assert result.output == "mcp config mode 0o600"  # what the CLI itself saw
    seen = bench.reported()["mcp"]
    assert seen["dir_mode"] == "0o700"
    assert seen["content"] == {
        "mcpServers": {
            "lobu": {
                "type": "http",
                "url": MCP_URL,
                "headers": {"Authorization": f"Bearer {TOKEN}"},
            }
        }
    }
    assert not Path(seen["path"]).exists()
    assert not Path(seen["path"]).parent.exists()
    argv = bench.reported()["argv"]
    assert argv[argv.index("--mcp-config") + 1] == seen["path"]


def test_the_token_reaches_no_argv_env_result_or_log(
    bench: Bench, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    bench.install("claude")
    bench.environ.update(
        DEVICE_AGENT_TOKEN=TOKEN,  # our own credential, by name
        SOME_COPY=TOKEN,  # the same value under another name
        AUTH_HEADER=f"Bearer {TOKEN}",  # ... or inside another value
        HARMLESS="keep me",
    )
    caplog.set_level(logging.DEBUG)
    with capture_logs() as events:
        result = bench.run("claude-code", config={"model": "m1"}, prompt="Please echo the token")
    seen = bench.reported()
    assert result.exit_reason == "ok"
    assert not any(TOKEN in arg for arg in seen["argv"])
    assert not any(TOKEN in value for value in seen["env"].values())
    assert "DEVICE_AGENT_TOKEN" not in seen["env"]
    assert "SOME_COPY" not in seen["env"]
    assert "AUTH_HEADER" not in seen["env"]
    assert seen["env"]["HARMLESS"] == "keep me"
    assert TOKEN not in repr(result)
    assert TOKEN not in repr(result)
    assert events  # the executor did log, and none of it holds the token
    assert TOKEN not in repr(events)
    assert TOKEN not in capsys.readouterr().out
    assert TOKEN not in caplog.text


def test_device_agent_token_is_stripped_even_without_secrets(bench: Bench) -> None:
    bench.install("claude")
    bench.environ["DEVICE_AGENT_TOKEN"] = "whatever-it-is"
    bench.run("claude-code", executor=bench.executor(secrets=()), mcp=False)
    assert "DEVICE_AGENT_TOKEN" not in bench.reported()["env"]


def test_a_cli_that_prints_the_token_has_it_redacted(bench: Bench) -> None:
    bench.install("echo_prompt", "echo-prompt")
    bench.profile("command", 'argv = ["echo-prompt"]\n')
    result = bench.run("command", prompt=f"the token is {TOKEN}")
    assert result.output == "[stdin] the token is [REDACTED]"


def test_mcp_off_in_settings_means_no_wiring(bench: Bench) -> None:
    bench.install("claude")
    result = bench.run("claude-code", executor=bench.executor(mcp=False))
    assert "--mcp-config" not in bench.reported()["argv"]
    assert result.details["mcp"] is False


def test_path_is_extended_with_existing_agent_dirs_only_once(bench: Bench) -> None:
    local_bin = bench.home / ".local" / "bin"
    bun_bin = bench.home / ".bun" / "bin"
    bench.install("claude", directory=local_bin)  # found only through the extension
    bun_bin.mkdir(parents=True)
    bench.environ["PATH"] = os.pathsep.join(
        [str(bench.bin), str(local_bin), "/usr/bin", "/bin", "/usr/bin"]
    )
    result = bench.run("claude-code", mcp=False)
    assert result.exit_reason == "ok", result.error
    path = bench.reported()["env"]["PATH"].split(os.pathsep)
    assert path[:4] == [str(bench.bin), str(local_bin), "/usr/bin", "/bin"]
    assert str(bun_bin) in path
    assert str(bench.home / ".npm-global" / "bin") not in path  # does not exist
    assert len(path) == len(set(path))
    assert bench.reported()["argv"][0] == str(local_bin / "claude")


def test_extended_path_from_an_empty_path(tmp_path: Path) -> None:
    (tmp_path / ".local" / "bin").mkdir(parents=True)
    assert extended_path("", home=tmp_path).split(os.pathsep)[0] == str(tmp_path / ".local/bin")


def test_env_allow_keeps_only_named_variables_and_the_basics() -> None:
    environ = {
        "PATH": "/bin",
        "HOME": "/h",
        "USER": "u",
        "LANG": "C",
        "TMPDIR": "/t",
        "ANTHROPIC_API_KEY": "k",
        "AWS_PROFILE": "p",
        "AWS_SECRET": "s",
        "OTHER": "o",
    }
    settings = ExecutorSettings(env_allow=("ANTHROPIC_API_KEY", "AWS_*"), env_deny=("AWS_SECRET",))
    env = child_environment(environ, settings, secrets=())
    assert set(env) == {
        "PATH",
        "HOME",
        "USER",
        "LANG",
        "TMPDIR",
        "ANTHROPIC_API_KEY",
        "AWS_PROFILE",
    }


def test_profile_env_is_added(bench: Bench) -> None:
    bench.install("claude")
    bench.run("claude-code", mcp=False)
    assert bench.reported()["env"]["DISABLE_AUTOUPDATER"] == "1"
