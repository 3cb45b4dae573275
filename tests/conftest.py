"""Shared fixtures: every test gets its own DEVICE_AGENT_HOME and never the user's keyring."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith("DEVICE_AGENT_"):
            monkeypatch.delenv(name)
    home = tmp_path / "agent-home"
    monkeypatch.setenv("DEVICE_AGENT_HOME", str(home))
    # The null backend stores nothing and reads nothing: tests never touch a real keychain.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    # Runs that finish in a test must not pop up on the desktop of whoever runs the tests.
    monkeypatch.setattr("device_agent.agent.app.find_notifier", lambda settings: None)
    return home
