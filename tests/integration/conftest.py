"""Integration fixtures: the dev server on loopback, fake CLIs on PATH, the agent as a process
(tests/support/lab.py) or in-process in the automation lane (tests/support/lanelab.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from device_agent.devserver import DevState
from tests.support.lab import Lab, open_lab
from tests.support.lanelab import AUTOMATION_WORKER, AutoLab, open_lane_lab


@pytest.fixture
def lab(tmp_path: Path, isolated_home: Path) -> Iterator[Lab]:
    with open_lab(DevState(create_checkin_watcher=False), isolated_home, tmp_path) as running:
        yield running


@pytest.fixture
def auto(tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> AutoLab:
    return open_lane_lab(
        AutoLab,
        fake="claude_automation",
        worker=AUTOMATION_WORKER,
        reports="seen",
        tmp_path=tmp_path,
        home=isolated_home,
        monkeypatch=monkeypatch,
    )
