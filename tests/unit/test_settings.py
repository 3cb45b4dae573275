from __future__ import annotations

import math
from pathlib import Path

import pytest

from device_agent.cli.main import main
from device_agent.config import (
    MAX_WAIT_SECONDS,
    ConfigError,
    ExecutorSettings,
    Settings,
    config_reference,
    load,
    validate,
)


def write_config(home: Path, text: str) -> Path:
    path = home / "config" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_any_config() -> None:
    settings = load(env={})
    assert settings.server is None
    assert settings.concurrency == 1
    assert settings.default_agent == "claude-code"
    assert settings.heartbeat_seconds == 30.0
    assert settings.executor.stdout_cap_bytes == 4 * 1024 * 1024


def test_precedence_file_then_env_then_flags(isolated_home: Path) -> None:
    write_config(
        isolated_home, 'server = "https://file.example"\nconcurrency = 2\nworker_id = "from-file"\n'
    )
    env = {
        "DEVICE_AGENT_HOME": str(isolated_home),
        "DEVICE_AGENT_SERVER": "https://env.example",
        "DEVICE_AGENT_WORKER_ID": "from-env",
    }
    settings = load(env=env, overrides={"worker_id": "from-flag"})
    assert settings.server == "https://env.example"
    assert settings.worker_id == "from-flag"
    assert settings.concurrency == 2


def test_home_isolates_every_path(isolated_home: Path) -> None:
    paths = load(env={"DEVICE_AGENT_HOME": str(isolated_home)}).paths
    for path in (paths.config_file, paths.journal_file, paths.log_file, paths.lock_file):
        assert isolated_home in path.parents


def test_sections_are_read(isolated_home: Path) -> None:
    write_config(
        isolated_home,
        "[executor]\nkill_grace_seconds = 1.5\nenv_deny = ['AWS_SECRET']\n"
        "[journal]\nkeep_rows = 5\n",
    )
    settings = load(env={"DEVICE_AGENT_HOME": str(isolated_home)})
    assert settings.executor.kill_grace_seconds == 1.5
    assert settings.executor.env_deny == ("AWS_SECRET",)
    assert settings.journal.keep_rows == 5


def test_notifications_table_is_read(isolated_home: Path) -> None:
    write_config(
        isolated_home,
        "[notifications]\nenabled = true\nbudget_per_day = 3\n"
        '[notifications.targets]\n"watcher:12" = false\n',
    )
    notifications = load(env={"DEVICE_AGENT_HOME": str(isolated_home)}).notifications
    assert notifications.enabled
    assert notifications.budget_per_day == 3
    assert notifications.targets["watcher:12"].enabled is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 'blue'\n", "unknown setting 'colour'"),
        ("[executor]\nbogus = 1\n", "unknown setting 'executor.bogus'"),
        ("server = 'not a url'\n", "is not a URL"),
        ("server = 'http://lobu.example.com'\n", "plain http to a non-loopback host"),
        (
            "heartbeat_seconds = -1\n",
            "heartbeat_seconds must be a number of seconds greater than 0",
        ),
        ("concurrency = 0\n", "concurrency must be a whole number of runs from 1 to 64"),
        ("concurrency = 'two'\n", "concurrency must be a whole number"),
        ("worker_id = 'has space'\n", "worker_id 'has space' is not valid"),
        ("token = 'owl_pat_xxxxxxxx'\n", "contains a token"),
        ("[executor]\nmcp = 'yes'\n", "executor.mcp must be true or false"),
        ("server = \n", "not valid TOML"),
        (
            "rotate_days_left = 90\n",
            "rotate_days_left must be a number of days at least 1 and below 90",
        ),
        (
            "account_timeout_seconds = 0\n",
            "account_timeout_seconds must be a number of seconds greater than 0",
        ),
        ("client_name = ' '\n", "client_name must not be empty"),
        ("notifications = 3\n", r"\[notifications\] must be a table"),
        ("[notifications]\nloud = true\n", "unknown setting 'notifications.loud'"),
        ("[notifications]\nbudget_per_day = -1\n", "budget_per_day must be a whole number"),
    ],
)
def test_bad_settings_give_one_clear_line(isolated_home: Path, text: str, message: str) -> None:
    write_config(isolated_home, text)
    with pytest.raises(ConfigError, match=message) as info:
        load(env={"DEVICE_AGENT_HOME": str(isolated_home)})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8787", "http://localhost:1/", "http://[::1]:5", "https://lobu.example.com/"],
)
def test_allowed_server_urls(url: str) -> None:
    assert load(env={}, overrides={"server": url}).server == url.rstrip("/")


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load(env={}, config_path=tmp_path / "nope.toml")


def test_repr_never_shows_the_token() -> None:
    settings = load(env={"DEVICE_AGENT_TOKEN": "owl_pat_secretsecretsecret"})
    assert "secretsecret" not in repr(settings)
    assert settings.token == "owl_pat_secretsecretsecret"


def test_shipped_example_config_is_valid() -> None:
    from device_agent.paths import shipped_dir

    settings = load(env={}, config_path=shipped_dir("config") / "config.example.toml")
    assert settings.server == "https://lobu.example.com"


# ------------------------------------------------- issue 12: errors name their source


def test_a_missing_config_named_by_the_environment_says_so(tmp_path: Path) -> None:
    env = {"DEVICE_AGENT_CONFIG": str(tmp_path / "nonexistent.toml")}
    with pytest.raises(ConfigError, match="named by DEVICE_AGENT_CONFIG") as raised:
        load(env=env)
    assert "--config" not in str(raised.value)


def test_a_missing_config_named_by_the_flag_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="named by --config"):
        load(env={}, config_path=tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('platform = "windows"\n', "sets platform: remove it"),
        ('token = "owl_pat_abcdefabcdef"\n', "contains a token"),
        (
            "[journal]\nkeep_days = true\n",
            "journal.keep_days must be a number of days .*, got True",
        ),
        ("heartbeat_seconds = false\n", "heartbeat_seconds must be a number"),
    ],
)
def test_config_keys_a_file_must_not_set(isolated_home: Path, text: str, message: str) -> None:
    write_config(isolated_home, text)
    with pytest.raises(ConfigError, match=message):
        load(env={"DEVICE_AGENT_HOME": str(isolated_home)})


def test_unknown_key_message_does_not_offer_token_or_platform(isolated_home: Path) -> None:
    write_config(isolated_home, "colour = 1\n")
    with pytest.raises(ConfigError, match="unknown setting") as raised:
        load(env={"DEVICE_AGENT_HOME": str(isolated_home)})
    offered = str(raised.value).split("use one of", 1)[1]
    assert "token" not in offered
    assert "platform" not in offered


def test_a_malformed_token_in_the_environment_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="DEVICE_AGENT_TOKEN does not hold a token"):
        load(env={"DEVICE_AGENT_TOKEN": "Bearer owl_pat_abc"})


def test_a_config_error_is_reported_before_a_malformed_token(isolated_home: Path) -> None:
    write_config(isolated_home, "concurrency = 0\n")
    env = {"DEVICE_AGENT_HOME": str(isolated_home), "DEVICE_AGENT_TOKEN": "two words"}
    with pytest.raises(ConfigError, match="concurrency must be a whole number"):
        load(env=env)


# ------------------------------ issue 20: a declared schema, one line naming key, file, unit


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # nan makes every request time out at once; inf backs off for years
        (
            "request_timeout_seconds = nan\n",
            "request_timeout_seconds must be a number of seconds greater than 0 and at most 300,"
            " got nan",
        ),
        (
            "max_backoff_seconds = inf\n",
            "max_backoff_seconds must be a number of seconds greater than 0 and at most 3600,"
            " got inf",
        ),
        (
            "shutdown_grace_seconds = -inf\n",
            "shutdown_grace_seconds must be a number of seconds from 0 to 3600, got -inf",
        ),
        (
            "heartbeat_seconds = -1\n",
            "heartbeat_seconds must be a number of seconds greater than 0 and at most 60, got -1:"
            " the server reaps a run not heartbeated for 3 minutes",
        ),
        ("concurrency = 65\n", "concurrency must be a whole number of runs from 1 to 64, got 65"),
        (
            "concurrency = 'two'\n",
            "concurrency must be a whole number of runs from 1 to 64, got 'two'",
        ),
        ("concurrency = 1.5\n", "concurrency must be a whole number of runs from 1 to 64, got 1.5"),
        (
            "wait_seconds = 26\n",
            "wait_seconds must be a whole number of seconds from 0 to 25, got 26",
        ),
        ("label = 3\n", "label must be a string, got 3"),
        (
            "[executor]\nstdout_cap_bytes = -1\n",
            "executor.stdout_cap_bytes must be a whole number of bytes from 1024 to 268435456,"
            " got -1",
        ),
        (
            "[executor]\nkill_grace_seconds = nan\n",
            "executor.kill_grace_seconds must be a number of seconds from 0 to 300, got nan",
        ),
        (
            "[executor]\nenv_deny = 'AWS'\n",
            "executor.env_deny must be a list of strings, got 'AWS'",
        ),
        (
            "[executor]\nallowed_permission_modes = ['yolo']\n",
            "executor.allowed_permission_modes must be a list of some of acceptEdits, auto, "
            "bypassPermissions, default, dontAsk, plan, got ['yolo']",
        ),
        (
            "[journal]\nkeep_days = inf\n",
            "journal.keep_days must be a number of days from 0 to 36500, got inf",
        ),
        (
            "[journal]\nkeep_rows = -1\n",
            "journal.keep_rows must be a whole number of runs from 0 to 10000000, got -1",
        ),
        (
            "[notifications]\ncooldown_seconds = nan\n",
            "notifications.cooldown_seconds must be a number of seconds from 0 to 86400, got nan",
        ),
        (
            "[notifications]\nbudget_per_day = 1e3\n",
            "notifications.budget_per_day must be a whole number of notifications from 0 to 1000,"
            " got 1000.0",
        ),
    ],
)
def test_a_bad_value_stops_run_with_one_line_naming_the_key_the_file_and_the_unit(
    isolated_home: Path, capsys: pytest.CaptureFixture[str], text: str, said: str
) -> None:
    path = write_config(isolated_home, text)
    assert main(["run", "--once", "--server", "http://127.0.0.1:9"]) == 2
    assert capsys.readouterr().err == (
        f"device-agent: configuration error: config file {path}: {said}\n"
    )


def test_a_bad_flag_is_said_to_come_from_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--once", "--server", "http://127.0.0.1:9", "--concurrency", "0"]) == 2
    assert capsys.readouterr().err == (
        "device-agent: configuration error: the command line: concurrency must be a whole "
        "number of runs from 1 to 64, got 0\n"
    )


def test_settings_made_in_code_are_checked_by_the_same_declarations() -> None:
    with pytest.raises(ConfigError, match=r"^request_timeout_seconds must be .* got nan$"):
        validate(Settings(request_timeout_seconds=math.nan))
    with pytest.raises(ConfigError, match=r"^executor\.kill_grace_seconds must be .* got inf$"):
        validate(Settings(executor=ExecutorSettings(kill_grace_seconds=math.inf)))


# ------------------------------------------- issue 21 point 2: the poll timeout's floor


@pytest.mark.parametrize("value", ["40", "59.9", "10"])
def test_a_poll_timeout_below_a_minute_is_refused_and_says_why(
    isolated_home: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """A poll we give up on is still processed by a server warming up (13-42 s seen), which
    then claims a run into it that sits `running` for hours: never cut a poll that short."""
    path = write_config(isolated_home, f"poll_timeout_seconds = {value}\n")
    assert main(["run", "--once", "--server", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"device-agent: configuration error: config file {path}: poll_timeout_seconds must be "
        f"a number of seconds from 60 to 600, got {value}: a server warming up"
    )
    assert err.count("\n") == 1


def test_a_poll_timeout_from_a_minute_is_kept_as_set_above_the_held_poll(
    isolated_home: Path,
) -> None:
    write_config(isolated_home, "poll_timeout_seconds = 60\nwait_seconds = 25\n")
    settings = load(env={"DEVICE_AGENT_HOME": str(isolated_home)})
    # The floor keeps the timeout above the longest hold plus a margin: no silent raise.
    assert settings.poll_timeout_seconds == 60
    assert settings.poll_timeout_seconds >= MAX_WAIT_SECONDS + 10


# --------------------------------- issue 21 point 5: the README's reference is the schema's


def test_the_readme_config_reference_is_made_from_the_declared_keys() -> None:
    """Every config key appears in the README with its real default, range and unit."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert config_reference() in readme, (
        "README.md's config table differs from the declarations in device_agent/config.py: "
        "replace it with the output of "
        "`python -c 'from device_agent.config import config_reference as r; print(r())'`"
    )
    assert "| `poll_timeout_seconds` | `90` |" in readme


def test_journal_keep_output_bytes_is_read_and_has_a_floor(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[journal]\nkeep_output_bytes = 65536\n")
    assert load(env={}, config_path=config).journal.keep_output_bytes == 65536
    config.write_text("[journal]\nkeep_output_bytes = 100\n")
    with pytest.raises(
        ConfigError, match=r"journal\.keep_output_bytes must be a whole number of bytes from 1024"
    ):
        load(env={}, config_path=config)
