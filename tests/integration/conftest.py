"""Integration fixtures: the dev server on loopback, fake CLIs on PATH, the agent as a process
(tests/support/lab.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from device_agent.devserver import DevState
from tests.support.lab import Lab, open_lab


@pytest.fixture
def lab(tmp_path: Path, isolated_home: Path) -> Iterator[Lab]:
    with open_lab(DevState(create_checkin_watcher=False), isolated_home, tmp_path) as running:
        yield running
