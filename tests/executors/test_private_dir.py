"""A run's private folder exists only when the run has a private file to put in it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from device_agent.agent.result import ExitReason
from tests.executors.conftest import Bench


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The prefixes of the temp dirs the launcher makes."""
    prefixes: list[str] = []
    real = tempfile.mkdtemp

    def recording(*args: Any, **kwargs: Any) -> str:
        prefixes.append(str(kwargs.get("prefix")))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", recording)
    return prefixes


def test_a_stdin_prompt_without_tools_makes_only_the_workdir(bench: Bench, made: list[str]) -> None:
    bench.profile("command", f'argv = ["{shutil.which("cat")}"]\n')
    report = bench.run("command", mcp=False, prompt="hello")
    assert report.exit_reason is ExitReason.OK
    assert report.output == "hello"
    assert made == ["device-agent-run-42-"]


def test_a_prompt_file_gets_its_private_folder_and_it_is_removed(
    bench: Bench, made: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    bench.profile(
        "command", f'argv = ["{shutil.which("cat")}", "{{prompt_file}}"]\nprompt = "file"\n'
    )
    report = bench.run("command", mcp=False, prompt="from a file")
    assert report.output == "from a file"
    assert made == ["device-agent-run-42-", "device-agent-42-"]
    assert list((tmp_path / "tmp").iterdir()) == []  # both removed after the run
