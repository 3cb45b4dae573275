from __future__ import annotations

from pathlib import Path

import pytest

from device_agent.config import ConfigError, load


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
        ("heartbeat_seconds = -1\n", "heartbeat_seconds must be greater than 0"),
        ("concurrency = 0\n", "concurrency must be between 1 and 64"),
        ("concurrency = 'two'\n", "concurrency must be a whole number"),
        ("worker_id = 'has space'\n", "worker_id 'has space' is not valid"),
        ("token = 'owl_pat_xxxxxxxx'\n", "contains a token"),
        ("[executor]\nmcp = 'yes'\n", "executor.mcp must be true or false"),
        ("server = \n", "not valid TOML"),
        ("rotate_days_left = 90\n", "rotate_days_left must be at least 1 and below 90"),
        ("account_timeout_seconds = 0\n", "account_timeout_seconds must be greater than 0"),
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
    from device_agent.resources import shipped_dir

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
        ("[journal]\nkeep_days = true\n", "journal.keep_days must be a number, got True"),
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
    with pytest.raises(ConfigError, match="concurrency must be between"):
        load(env=env)


def test_journal_keep_output_bytes_is_read_and_has_a_floor(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[journal]\nkeep_output_bytes = 65536\n")
    assert load(env={}, config_path=config).journal.keep_output_bytes == 65536
    config.write_text("[journal]\nkeep_output_bytes = 100\n")
    with pytest.raises(ConfigError, match=r"journal\.keep_output_bytes must be at least 1024"):
        load(env={}, config_path=config)
