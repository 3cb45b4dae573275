"""A CLI's private stand-in home: the user's settings read as the CLI reads them, merged, linked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device_agent.executors.cli_home import (
    UnreadableSettings,
    link_shared,
    merged,
    own_settings,
    strip_json_comments,
    user_home,
)
from device_agent.executors.profiles import HomeSpec

SPEC = HomeSpec(env="CLI_HOME", settings=".cli/settings.json", share=(".cli/*", ".env"))


def test_comments_go_and_strings_stay() -> None:
    text = (
        '{ // a comment\n "url": "http://x//y", /* block\n over lines */ "q": "a \\" // b",\n'
        ' "star": "/* not a comment */" }'
    )
    stripped = strip_json_comments(text)
    assert json.loads(stripped) == {
        "url": "http://x//y",
        "q": 'a " // b',
        "star": "/* not a comment */",
    }
    assert stripped.count("\n") == text.count("\n")  # errors still point at the right line


def test_an_unterminated_comment_runs_to_the_end() -> None:
    assert strip_json_comments('{"a": 1} /* open').strip() == '{"a": 1}'


def test_merge_goes_into_objects_and_replaces_anything_else() -> None:
    base = {"mcpServers": {"mine": {"command": "x"}}, "list": [1], "keep": True}
    over = {"mcpServers": {"lobu": {"httpUrl": "u"}}, "list": [2]}
    assert merged(base, over) == {
        "mcpServers": {"mine": {"command": "x"}, "lobu": {"httpUrl": "u"}},
        "list": [2],
        "keep": True,
    }
    assert base["mcpServers"] == {"mine": {"command": "x"}}  # not changed in place


def test_the_users_home_is_the_variables_value_else_home() -> None:
    assert user_home(SPEC, {"CLI_HOME": "/a", "HOME": "/b"}) == Path("/a")
    assert user_home(SPEC, {"HOME": "/b"}) == Path("/b")


@pytest.mark.parametrize("text", ["[1]", "{", '"x"'])
def test_settings_that_are_no_json_object_are_unreadable(tmp_path: Path, text: str) -> None:
    path = tmp_path / "settings.json"
    path.write_text(text)
    with pytest.raises(UnreadableSettings, match=r"settings\.json"):
        own_settings(path)


def test_missing_or_empty_settings_are_none(tmp_path: Path) -> None:
    assert own_settings(tmp_path / "absent.json") == {}
    (tmp_path / "empty.json").write_text("  \n")
    assert own_settings(tmp_path / "empty.json") == {}


def test_shared_entries_are_links_and_the_settings_file_is_not(tmp_path: Path) -> None:
    own, home = tmp_path / "own", tmp_path / "run-home"
    (own / ".cli" / "tmp").mkdir(parents=True)
    (own / ".cli" / "settings.json").write_text("{}")
    (own / ".cli" / "creds.json").write_text("{}")
    (own / ".env").write_text("KEY=1")
    (home / ".cli").mkdir(parents=True)
    (home / ".cli" / "settings.json").write_text('{"run": 1}')
    link_shared(SPEC, own, home)
    assert (home / ".cli" / "creds.json").readlink() == own / ".cli" / "creds.json"
    assert (home / ".cli" / "tmp").readlink() == own / ".cli" / "tmp"
    assert (home / ".env").readlink() == own / ".env"
    assert not (home / ".cli" / "settings.json").is_symlink()
    assert (home / ".cli" / "settings.json").read_text() == '{"run": 1}'
