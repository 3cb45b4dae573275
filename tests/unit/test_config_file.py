"""`config_file.remember`: the user's config keeps its comments; the new keys are checked,
written 0600 and atomically; a key the file sets otherwise is kept and reported."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest

from device_agent.config import load
from device_agent.config_file import remember
from device_agent.errors import ConfigError

USERS_FILE = """\
# my device-agent settings
label = "box"   # what the web app shows

[executor]
# keep the temp dirs to look at them
keep_workdir = true
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_missing_file_is_created_0600_with_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "config" / "config.toml"
    done = remember(path, {"server": "https://lobu.example.com", "worker_id": "headless:box-1"})
    assert done.written == {"server": "https://lobu.example.com", "worker_id": "headless:box-1"}
    assert done.kept == {}
    assert tomllib.loads(path.read_text()) == {
        "server": "https://lobu.example.com",
        "worker_id": "headless:box-1",
    }
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700


def test_the_users_comments_and_settings_are_kept_and_the_keys_go_to_the_top_level(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USERS_FILE)
    path.chmod(0o644)
    remember(path, {"server": "https://lobu.example.com"})
    text = path.read_text()
    for line in USERS_FILE.splitlines():
        assert line in text  # every comment and setting, as the user wrote it
    assert text.index('server = "https://lobu.example.com"') < text.index("[executor]")
    assert tomllib.loads(text) == {
        "label": "box",
        "server": "https://lobu.example.com",
        "executor": {"keep_workdir": True},
    }
    assert mode(path) == 0o600
    settings = load(env={"DEVICE_AGENT_HOME": str(tmp_path / "home")}, config_path=path)
    assert settings.server == "https://lobu.example.com"
    assert settings.executor.keep_workdir is True


def test_a_different_value_in_the_file_is_kept_and_reported_unless_replaced(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('server = "https://other.example.com"  # work\n')
    before = path.read_text()
    done = remember(path, {"server": "https://lobu.example.com", "worker_id": "headless:b"})
    assert done.kept == {"server": "https://other.example.com"}
    assert done.written == {"worker_id": "headless:b"}
    assert tomllib.loads(path.read_text())["server"] == "https://other.example.com"
    assert path.read_text().startswith(before)

    replaced = remember(path, {"server": "https://lobu.example.com"}, replace={"server"})
    assert replaced.written == {"server": "https://lobu.example.com"}
    assert 'server = "https://lobu.example.com"  # work' in path.read_text()


def test_the_same_value_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('server = "https://lobu.example.com/"\n')
    path.chmod(0o640)
    done = remember(
        path,
        {"server": "https://lobu.example.com"},
        same={"server": lambda current, ours: str(current).rstrip("/") == ours},
    )
    assert (done.written, done.kept) == ({}, {})
    assert mode(path) == 0o640  # untouched


def test_a_symlinked_config_is_written_through_to_its_target(tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles" / "device-agent.toml"
    dotfiles.parent.mkdir()
    dotfiles.write_text("# from my dotfiles\n")
    link = tmp_path / "config.toml"
    link.symlink_to(dotfiles)
    remember(link, {"server": "https://lobu.example.com"})
    assert link.is_symlink()
    assert dotfiles.read_text() == '# from my dotfiles\nserver = "https://lobu.example.com"\n'


def test_the_replace_is_atomic_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(USERS_FILE)

    def full_disk(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(ConfigError, match="No space left on device"):
        remember(path, {"server": "https://lobu.example.com"})
    assert path.read_text() == USERS_FILE  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_values_are_quoted_as_toml_strings(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    odd = 'a "quoted" \\ value\twith a tab'
    remember(path, {"label": odd})
    assert tomllib.loads(path.read_text()) == {"label": odd}


def test_a_file_that_is_not_toml_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("server = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        remember(path, {"server": "https://lobu.example.com"})
    assert path.read_text() == "server = \n"
