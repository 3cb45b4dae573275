"""Profile loading: the shipped set, user overrides, and broken files reported by file and key."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from device_agent.cli.main import main
from device_agent.executors.probe import ProfileCheck, check_profiles
from device_agent.executors.profiles import ProfileError, load_profiles
from device_agent.executors.readers import JsonlReader, JsonReader
from tests.executors.conftest import Bench
from tests.support.processes import live_members

SHIPPED = {
    "claude-code",
    "codex",
    "gemini",
    "opencode",
    "pi",
    "agy",
    "command",
    "demo",
    "demo-automation",
    "demo-chat",
}


def test_shipped_profiles_load() -> None:
    profiles = load_profiles()
    assert set(profiles) == SHIPPED
    # Each npm-published CLI's profile names the version it was checked against
    # (tests/realcli installs exactly that one); agy is not on the npm registry.
    checked = {name for name, p in profiles.items() if p.checked_version}
    assert checked == {"claude-code", "codex", "gemini", "opencode", "pi"}
    assert {name for name, p in profiles.items() if not p.configured} == {"command"}
    # Every CLI with an event stream is read from it, the run's transcript included.
    streams = {"claude-code", "codex", "gemini", "opencode", "pi"}
    assert {name for name, p in profiles.items() if isinstance(p.reader, JsonlReader)} == (
        streams | {"demo-automation"}
    )
    assert {name: profiles[name].transcript for name in streams} == {s: s for s in streams}
    assert isinstance(profiles["demo"].reader, JsonReader)
    assert {p.transcript for name, p in profiles.items() if name not in streams} == {
        "text",
        "claude-code",  # the automation demo agent streams as Claude Code does
    }
    # agy's only documented headless form takes the prompt as the -p value.
    assert {name for name, p in profiles.items() if p.prompt != "stdin"} == {"agy"}


def test_a_user_profile_replaces_the_shipped_one(bench: Bench) -> None:
    bench.install("echo_prompt", "my-claude")
    bench.profile("claude-code", 'binary = "my-claude"\n')
    profiles = bench.profiles()
    assert profiles["claude-code"].binary == "my-claude"
    assert profiles["claude-code"].source == bench.user_profiles / "claude-code.toml"
    assert profiles["codex"].binary == "codex"  # the others stay
    result = bench.run("claude-code", prompt="hi", mcp=False)
    assert result.output == "[stdin] hi"


def test_a_user_can_add_a_new_kind(bench: Bench) -> None:
    bench.install("echo_prompt", "aider")
    bench.profile("aider", 'binary = "aider"\n')
    assert bench.executor().has_profile("aider")
    assert bench.run("aider", prompt="x").output == "[stdin] x"


BROKEN = [
    ('binary = "x"\nprompt = "pigeon"\n', "prompt", "must be one of argument, stdin, file"),
    ('binary = "x"\nbinray = "y"\n', "binray", "unknown key"),
    ('binary = ""\n', "binary", "must name a program"),
    ("args = []\n", "binary", "is required"),
    ('argv = ["x"]\nbinary = "x"\n', "argv", "use either argv or binary + args"),
    ('binary = "x"\nargs = ["{nope}"]\n', "args", "unknown placeholder {nope}"),
    ('binary = "x"\nprompt = "argument"\n', "args", "must contain {prompt}"),
    (
        'binary = "x"\nargs = ["--in", "{prompt_file}"]\n',
        "args",
        'uses {prompt_file}, which needs prompt = "file"',
    ),
    ('binary = "x"\nargs = ["-m", "{value}"]\n', "args", "unknown placeholder {value}"),
    (
        'binary = "x"\n[options.model]\nargs = ["-m", "{value}"]\n',
        "args",
        'has [options] but no "{options}" element',
    ),
    (
        'binary = "x"\nargs = ["{options}"]\n[options.model]\nargs = "--model"\n',
        "options.model.args",
        "must be a list of strings",
    ),
    (
        'binary = "x"\nargs = ["{options}"]\n[options]\nmodel = "--model"\n',
        "options.model",
        "must be a table",
    ),
    (
        'binary = "x"\nargs = ["{options}"]\n[options.timeout_seconds]\nargs = ["-t"]\n',
        "options.timeout_seconds",
        "is enforced by the device agent",
    ),
    (
        'binary = "x"\nargs = ["{mcp}"]\n[mcp]\nargs = ["--token", "{mcp_token}"]\n',
        "mcp.args",
        "must not contain {mcp_token}",
    ),
    (
        'binary = "x"\nargs = ["{mcp}"]\n[mcp]\nfile = "../up.json"\nconfig = { a = "b" }\n',
        "mcp.file",
        'must be "private" or a path inside',
    ),
    ('binary = "x"\nargs = ["{mcp}"]\n[mcp]\nfile = "private"\n', "mcp.file", "needs [mcp.config]"),
    (
        'binary = "x"\nargs = ["{mcp}"]\n[mcp]\nconfig = { a = "b" }\n',
        "mcp.config",
        "never reaches the CLI",
    ),
    (
        'binary = "x"\nargs = ["{mcp}"]\n[mcp]\nargs = ["{mcp_config}"]\n',
        "mcp.args",
        "uses {mcp_config} but [mcp] has no config and file",
    ),
    ('binary = "x"\n[output]\nreader = "xml"\n', "output.reader", "must be one of"),
    ('binary = "x"\n[output]\nreader = "json"\n', "output.text", "is required"),
    (
        'binary = "x"\n[output]\nreader = "json"\ntext = "r"\nstderr = "yes"\n',
        "output.stderr",
        "must be true or false",
    ),
    (
        'binary = "x"\n[output]\nreader = "jsonl"\ntext = "t"\n',
        "output.final",
        "must say what the final event looks like",
    ),
    (
        'binary = "x"\n[output]\nreader = "jsonl"\ntext = "t"\nfinal = { type = "x" }\n'
        'details = { usage = "usage" }\n',
        "output.details.usage",
        "must be 'event_type:path'",
    ),
    ('binary = "x"\n[output]\nreader = "file"\n', "args", "must contain {output_file}"),
    (
        'binary = "x"\n[output]\nreader = "jsonl"\ntext = "t"\nfinal = { type = "x" }\n'
        "failures = [{}]\n",
        "output.failures",
        "must be a list of tables",
    ),
    (
        'binary = "x"\n[output]\nreader = "jsonl"\ntext = "t"\nfinal = { type = "x" }\n'
        "failures = [{ type = [1] }]\n",
        "output.failures.0",
        "must be a table of paths to strings, numbers or booleans",
    ),
    ('binary = "x"\n[output]\ntranscript = "xml"\n', "output.transcript", "must be one of"),
    ('binary = "x"\n[output]\nskip_lines = [""]\n', "output.skip_lines", "not empty strings"),
    ('binary = "x"\nenv = { A = 1 }\n', "env", "must be a table of strings"),
    ('binary = "x"\nchecked_version = "latest"\n', "checked_version", "must be a version"),
    (
        'binary = "x"\nargs = ["{mcp}"]\n[mcp.home]\nenv = "H"\nsettings = "s.json"\n',
        "mcp.home",
        "needs [mcp.config]",
    ),
    (
        'binary = "x"\nargs = ["{mcp}"]\n[mcp]\nconfig = { a = "b" }\n'
        '[mcp.home]\nenv = "NOT A NAME"\nsettings = "s.json"\n',
        "mcp.home.env",
        "must be an environment variable's name",
    ),
    (
        'binary = "x"\nargs = ["{mcp}"]\n[mcp]\nconfig = { a = "b" }\n'
        '[mcp.home]\nenv = "H"\nsettings = "/etc/s.json"\n',
        "mcp.home.settings",
        "must be a path inside the CLI's home folder",
    ),
    (
        'binary = "x"\nargs = ["{mcp}"]\n[mcp]\nconfig = { a = "b" }\n'
        '[mcp.home]\nenv = "H"\nsettings = "s.json"\nshare = ["../*"]\n',
        "mcp.home.share",
        "must be a path inside the CLI's home folder",
    ),
]


@pytest.mark.parametrize(("text", "key", "message"), BROKEN)
def test_a_broken_profile_is_reported_by_file_and_key(
    tmp_path: Path, text: str, key: str, message: str
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ProfileError) as caught:
        load_profiles(user_dir=tmp_path)
    assert str(caught.value).startswith(f"{path}: {key}: ")
    assert message in str(caught.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "codex.toml"
    path.write_text('binary = "codex\n')
    with pytest.raises(ProfileError, match=rf"^{path}: not valid TOML: "):
        load_profiles(user_dir=tmp_path)


def test_missing_user_dir_is_fine(tmp_path: Path) -> None:
    assert set(load_profiles(user_dir=tmp_path / "nowhere")) == SHIPPED


# ------------------------------------------------------------------ doctor


@pytest.mark.parametrize(
    ("printed", "checked", "number", "drift"),
    [
        ("codex-cli 0.171.0", "0.171.0", "0.171.0", None),
        ("codex-cli 0.172.0", "0.171.0", "0.172.0", "newer"),
        ("2.1.99 (Claude Code)", "2.1.337", "2.1.99", "older"),  # by number, not by text
        ("0.61", "0.61.0", "0.61", None),
        ("0.60.9", "0.61", "0.60.9", "older"),
        ("a CLI without a number", "1.0.0", None, None),
        ("1.18.33", None, "1.18.33", None),
    ],
)
def test_a_found_version_is_compared_with_the_checked_one(
    printed: str, checked: str | None, number: str | None, drift: str | None
) -> None:
    check = ProfileCheck("x", "x", "/bin/x", printed, None, checked_version=checked)
    assert check.version_number == number
    assert check.drift == drift


def test_check_profiles_finds_binaries_and_versions(bench: Bench) -> None:
    bench.install("claude")
    bench.install("hang")
    bench.profile("hang", 'binary = "hang"\n')  # answers --version by hanging
    bench.environ["FAKE_MODE"] = "hang"
    checks = asyncio.run(check_profiles(bench.profiles(), environ=bench.environ, time_limit=0.5))
    by_name = {check.name: check for check in checks}
    assert [check.name for check in checks] == sorted(by_name)
    assert by_name["claude-code"].path == str(bench.bin / "claude")
    assert by_name["claude-code"].version == "2.1.337 (Claude Code)"
    assert by_name["claude-code"].version_number == "2.1.337"
    assert by_name["claude-code"].checked_version == "2.1.337"
    assert by_name["claude-code"].drift is None
    assert by_name["claude-code"].error is None
    assert by_name["codex"].path is None
    assert by_name["codex"].error == "codex binary not found on PATH"
    assert by_name["command"].error is not None
    assert by_name["command"].error.startswith("not configured")
    assert by_name["demo"].version is not None
    assert by_name["demo"].version.startswith("Python 3.")
    assert by_name["hang"].error == "no answer to --version within 0.5 s"
    assert by_name["hang"].drift is None  # no version, nothing to compare
    assert live_members(bench.reported()["pgid"]) == []


# ------------------------- issue 20: checked like the config file, one line, exit 2 at start


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("binary = nan\n", "binary: must be a string, got nan"),
        ('binary = "x"\nprompt = inf\n', "prompt: must be one of argument, stdin, file, got inf"),
        ('binary = "x"\nargs = -1\n', "args: must be a list of strings, got -1"),
        (
            'binary = "x"\nprompt = "clipboard"\n',
            "prompt: must be one of argument, stdin, file, got 'clipboard'",
        ),
        ('binary = "x"\nversion_args = [1]\n', "version_args: must be a list of strings, got [1]"),
        (
            'binary = "x"\n[output]\nreader = "json"\ntext = "r"\nstderr = 1\n',
            "output.stderr: must be true or false, got 1",
        ),
    ],
)
def test_a_bad_profile_value_stops_run_with_one_line_naming_the_file_and_key(
    isolated_home: Path, capsys: pytest.CaptureFixture[str], text: str, said: str
) -> None:
    path = isolated_home / "config" / "executors" / "mine.toml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    assert main(["run", "--once", "--server", "http://127.0.0.1:9"]) == 2
    assert capsys.readouterr().err == f"device-agent: executor profile error: {path}: {said}\n"
