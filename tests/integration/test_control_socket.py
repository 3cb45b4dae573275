"""The running agent answers on its control socket: status, pause/resume, targets, Run now."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from device_agent.desktop.control_client import ControlError, request, socket_path
from tests.support.agent import install_fake
from tests.support.lab import WORKER_ID, Lab
from tests.support.waiting import wait_for


def _ask(lab: Lab, op: str, **args: Any) -> dict[str, Any]:
    return request(socket_path(lab.home / "state"), op, **args)


def _status(lab: Lab) -> dict[str, Any]:
    try:
        return _ask(lab, "status")
    except ControlError:
        return {}


def _progress_profile(lab: Lab, release: Path) -> dict[str, str]:
    install_fake(lab.bin_dir, "progress")
    executors = lab.home / "config" / "executors"
    executors.mkdir(parents=True, exist_ok=True)
    (executors / "command.toml").write_text('argv = ["progress"]\n')
    return {"FAKE_RELEASE": str(release)}


def test_status_shows_a_running_run_with_elapsed_time_and_output_tail(
    lab: Lab, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    env = _progress_profile(lab, release)
    run_id = lab.state.queue_run(lab.add_watcher("Long job", name="Long job", agent_kind="command"))
    agent = lab.start_agent(**env)
    runs = wait_for(
        lambda: [r for r in _status(lab).get("runs", []) if "step 3" in r["output_tail"]],
        what="the running run's output in status",
    )
    assert (runs[0]["run_id"], runs[0]["name"], runs[0]["lane"]) == (run_id, "Long job", "watcher")
    assert runs[0]["elapsed_seconds"] >= 0
    shown = lab.run_agent("status", **env)
    assert f"running: run {run_id} — Long job (watcher)" in shown.stdout
    assert "  | step 3 of 3" in shown.stdout
    report = json.loads(lab.run_agent("status", "--json", **env).stdout)
    assert report["state"] == "busy"
    assert report["last_poll_at"].endswith("+00:00")
    release.touch()
    wait_for(lambda: lab.state.run(run_id).status == "completed", what="the run to complete")
    assert _status(lab)["runs"] == []
    code, err = lab.stop_agent(agent)
    assert code == 0, err


def test_pause_claims_nothing_until_resume(lab: Lab) -> None:
    agent = lab.start_agent()
    wait_for(lambda: _status(lab).get("state") == "idle", what="the agent to go idle")
    paused = lab.run_agent("pause")
    assert paused.returncode == 0, paused.stderr
    wait_for(lambda: _status(lab).get("state") == "paused", what="the loop to stop at the pause")
    run_id = lab.state.queue_run(lab.add_watcher("Wait for me"))
    _ask(lab, "poll_now")  # handled by the loop, which is paused: no poll follows
    assert _status(lab)["paused"] is True
    assert lab.state.run(run_id).status == "pending"
    assert "PAUSED" in lab.run_agent("status").stdout
    resumed = lab.run_agent("resume")
    assert resumed.returncode == 0, resumed.stderr
    wait_for(lambda: lab.state.run(run_id).status == "completed", what="the run after resume")
    code, err = lab.stop_agent(agent)
    assert code == 0, err


def test_run_now_over_the_socket_queues_and_polls_at_once(lab: Lab) -> None:
    # A device-bound token: its Run now route checks the pinning itself (docs/protocol.md,
    # "Run now"); the dev server does not model the unbound tool-proxy detour's lookup.
    lab.token = lab.state.add_token(bound_worker_id=WORKER_ID)
    watcher_id = lab.add_watcher("Run me now", name="Run me now")
    agent = lab.start_agent()
    wait_for(lambda: _status(lab).get("state") == "idle", what="the agent to go idle")
    answer = _ask(lab, "trigger", target_id=watcher_id, lane="watcher")
    assert "queued" in answer["message"]
    run_id = answer["run_id"]
    wait_for(lambda: lab.state.run(run_id).status == "completed", what="the triggered run")
    targets = _ask(lab, "targets")["targets"]
    assert {"id": watcher_id, "lane": "watcher", "name": "Run me now"} in targets
    code, err = lab.stop_agent(agent)
    assert code == 0, err


def test_a_refused_run_now_is_an_error_answer_not_a_crash(lab: Lab) -> None:
    lab.token = lab.state.add_token(bound_worker_id=WORKER_ID)
    agent = lab.start_agent()
    # Polled once: "idle" alone comes before the first poll, and a server that has not
    # seen this device yet refuses Run now for that reason instead.
    wait_for(
        lambda: (status := _status(lab)).get("state") == "idle" and status.get("last_poll_at"),
        what="the agent's first poll",
    )
    with pytest.raises(ControlError, match="999999"):
        _ask(lab, "trigger", target_id="999999", lane="watcher")
    assert _status(lab)["state"] == "idle"
    code, err = lab.stop_agent(agent)
    assert code == 0, err


def test_status_without_a_daemon_says_so_and_reads_the_journal(lab: Lab) -> None:
    shown = lab.run_agent("status")
    assert shown.returncode == 0, shown.stderr
    assert "agent: not running — the daemon is not running" in shown.stdout
    report = json.loads(lab.run_agent("status", "--json").stdout)
    assert report["daemon_running"] is False
    assert report["backlog"] == []
    assert report["worker_id"] is None  # only a running daemon reports its worker id


def test_targets_are_remembered_from_the_journal_at_start(lab: Lab) -> None:
    watcher_id = lab.add_watcher("Ran yesterday", name="Ran yesterday")
    lab.state.queue_run(watcher_id)
    assert lab.run_agent("run", "--once").returncode == 0
    agent = lab.start_agent()
    wait_for(lambda: _status(lab).get("state") == "idle", what="the agent to go idle")
    targets = _ask(lab, "targets")["targets"]
    assert targets == [{"id": watcher_id, "lane": "watcher", "name": "Ran yesterday"}]
    code, err = lab.stop_agent(agent)
    assert code == 0, err


def test_status_says_why_a_result_is_still_waiting(lab: Lab) -> None:
    from device_agent.devserver import Fault

    lab.state.faults.add(Fault(route="complete", kind="status", status=503, times=None))
    run_id = lab.state.queue_run(lab.add_watcher("Refused for now"))
    agent = lab.start_agent()

    def waiting() -> list[dict[str, Any]]:
        report = json.loads(lab.run_agent("status", "--json").stdout)
        return [b for b in report["backlog"] if "503" in b["waiting_because"]]

    backlog = wait_for(waiting, what="status to show the result waiting, with the reason")
    assert backlog[0]["run_id"] == run_id
    assert f"run {run_id} (Inbox digest)" in lab.run_agent("status").stdout
    lab.state.faults.clear()
    code, err = lab.stop_agent(agent)
    assert code == 0, err
