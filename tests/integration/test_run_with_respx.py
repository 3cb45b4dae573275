"""`device-agent run --once` end to end in this process, with respx playing the server on
the very HTTP client the agent uses (no rerouting, no network): poll -> heartbeat -> complete,
run by a trivial `command` profile in a fresh DEVICE_AGENT_HOME."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import respx

from device_agent.agent.poll_loop import ONCE_ATTEMPTS
from device_agent.cli.main import main
from device_agent.errors import ExitCode
from tests.support.agent import journal_rows
from tests.support.servers import without_proxies

SERVER = "https://lobu.test"
WORKER = "linux:respx"
TOKEN = "owl_pat_" + "r" * 32
RUN_ID = 41
COMPLETE = f"/api/workers/me/runs/{RUN_ID}/complete-watcher"
CLAIM = {
    "run_id": RUN_ID,
    "run_type": "watcher",
    "payload": {
        "watcher": {"id": "w-1", "name": "Inbox", "prompt": "Say hi", "agent_kind": None},
        "event": {
            "payload": {
                "window_start": "2026-11-30T07:00:00Z",
                "window_end": "2026-11-30T08:00:00Z",
            }
        },
    },
}


@pytest.fixture
def home(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh home configured as a user would: the server, token and worker id in the
    environment, and a `command` profile whose command is `cat` (the prompt comes back)."""
    without_proxies(monkeypatch)
    monkeypatch.setenv("DEVICE_AGENT_SERVER", SERVER)
    monkeypatch.setenv("DEVICE_AGENT_TOKEN", TOKEN)
    monkeypatch.setenv("DEVICE_AGENT_WORKER_ID", WORKER)
    config = isolated_home / "config"
    (config / "executors").mkdir(parents=True)
    (config / "executors" / "command.toml").write_text('argv = ["cat"]\nprompt = "stdin"\n')
    # Retries of an undelivered result a moment apart, not seconds: the test waits on none.
    (config / "config.toml").write_text("max_backoff_seconds = 0.05\n")
    return isolated_home


def paths(router: respx.MockRouter) -> list[str]:
    return [call.request.url.path for call in router.calls]


def test_run_once_polls_heartbeats_and_completes_against_respx(home: Path) -> None:
    with respx.mock(base_url=SERVER, assert_all_called=True) as lobu:
        lobu.post("/api/workers/poll").respond(200, json=CLAIM)
        lobu.post("/api/workers/heartbeat").respond(200, json={"continue": True})
        done = lobu.post(COMPLETE).respond(200, json={"ok": True, "status": "completed"})

        assert main(["run", "--once", "--agent", "command"]) == ExitCode.OK

        sent = paths(lobu)
        assert sent[0] == "/api/workers/poll"
        assert sent.index("/api/workers/heartbeat") < sent.index(COMPLETE)
        assert sent.count(COMPLETE) == 1
        request = done.calls.last.request
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        body: dict[str, Any] = json.loads(request.content)
    assert body["worker_id"] == WORKER
    assert "Say hi" in body["output"]  # `cat` gave the prompt back
    assert body["error"] is None
    assert journal_rows(home)[RUN_ID]["state"] == "acknowledged"


@pytest.mark.parametrize("status", [307, 302])
def test_a_redirected_result_report_stays_queued_and_is_retried(
    home: Path, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 21, point 8: a 3xx to a completion is not followed (the token stays home), not
    final either: the result stays in the outbox and is tried again; `run --once` says the
    server could not take it (exit 4), never "internal error"."""
    with respx.mock(assert_all_called=False) as lobu:
        lobu.post(f"{SERVER}/api/workers/poll").respond(200, json=CLAIM)
        lobu.post(f"{SERVER}/api/workers/heartbeat").respond(200, json={"continue": True})
        lobu.post(f"{SERVER}{COMPLETE}").respond(
            status, headers={"Location": "https://elsewhere.test/take"}
        )
        elsewhere = lobu.route(host="elsewhere.test").respond(200, json={"ok": True})

        code = main(["run", "--once", "--agent", "command"])

        assert paths(lobu).count(COMPLETE) == ONCE_ATTEMPTS
        assert not elsewhere.called
    assert code == ExitCode.UNREACHABLE
    assert "internal error" not in capsys.readouterr().err
    row = journal_rows(home)[RUN_ID]
    assert row["state"] == "finished"  # in the outbox, for the next start to send again
