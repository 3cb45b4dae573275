"""What the daemon answers on `status`: only what is true now (issue 12, item 8)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from device_agent.agent.activity import RunBoard
from device_agent.agent.status import AgentState, Status
from device_agent.desktop.control_handler import AgentControl


def _control(status: Status) -> AgentControl:
    agent: Any = SimpleNamespace(
        status=status,
        paused=False,
        pipeline=SimpleNamespace(board=RunBoard()),
        outbox=SimpleNamespace(waiting={}),
        server="http://127.0.0.1:9",
        worker_id="linux:test",
        settings=SimpleNamespace(token=None),
        limit=SimpleNamespace(report=lambda: {"today": {"runs": 0}, "reached": None}),
    )
    return AgentControl(agent)


def test_a_resolved_problem_is_no_longer_shown() -> None:
    status = Status()
    control = _control(status)
    status.state, status.detail = AgentState.BACKING_OFF, "HTTP 503 from the server"
    assert control.status()["problems"] == ["HTTP 503 from the server"]
    status.state, status.detail = AgentState.IDLE, ""
    assert control.status()["problems"] == []


def test_status_answers_the_keys_the_cli_and_tray_read() -> None:
    status = Status(state=AgentState.IDLE, last_poll_at=time.time())
    control = _control(status)
    control.agent.outbox.waiting[5] = "HTTP 500 Internal Server Error"
    answer = control.status()
    assert answer["schema_version"] == 1
    assert answer["version"]
    assert answer["last_poll_at"] == status.last_poll_at
    assert answer["backlog"] == [{"run_id": 5, "waiting_because": "HTTP 500 Internal Server Error"}]
    assert answer["limit"] == {"today": {"runs": 0}, "reached": None}
