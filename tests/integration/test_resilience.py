"""Nothing lost, nothing twice: restarts, shutdown, the outbox and the lock, with the real agent."""

from __future__ import annotations

import json
import signal
from typing import Any

from device_agent.desktop.control_client import ControlError, request, socket_path
from device_agent.devserver import Fault
from tests.support.agent import journal_rows
from tests.support.lab import Lab
from tests.support.processes import alive
from tests.support.waiting import wait_for


def first_cli_pid(lab: Lab) -> int:
    pids = wait_for(lambda: [e["pid"] for e in lab.executions()], what="the CLI to start")
    return int(pids[0])


def test_run_finishing_within_grace_is_reported_on_shutdown(lab: Lab) -> None:
    run_id = lab.state.queue_run(lab.add_watcher("Take a moment [[slow]]"))
    agent = lab.start_agent(FAKE_SLOW_SECONDS="1.5")
    first_cli_pid(lab)
    code, err = lab.stop_agent(agent)
    assert code == 0, err
    run = lab.state.run(run_id)
    assert (run.status, run.completions_committed) == ("completed", 1)


def test_run_past_grace_is_cancelled_and_leaves_no_process(lab: Lab) -> None:
    lab.config["shutdown_grace_seconds"] = 0.3
    run_id = lab.state.queue_run(lab.add_watcher("Never ends [[hang]]"))
    agent = lab.start_agent()
    pid = first_cli_pid(lab)
    code, err = lab.stop_agent(agent)
    assert code == 0, err
    assert not alive(pid)
    run = lab.state.run(run_id)
    assert run.status == "failed"
    assert run.exit_reason == "cancelled"
    assert "grace period" in (run.error or "")


def test_second_signal_cuts_the_grace_short(lab: Lab) -> None:
    lab.config["shutdown_grace_seconds"] = 600
    run_id = lab.state.queue_run(lab.add_watcher("Never ends [[hang]]"))
    agent = lab.start_agent()
    pid = first_cli_pid(lab)
    agent.send_signal(signal.SIGTERM)
    wait_for(lambda: _status(lab).get("state") == "stopping", what="the agent to start draining")
    agent.send_signal(signal.SIGTERM)
    agent.communicate(timeout=30)
    assert agent.returncode == 0
    assert not alive(pid)
    assert lab.state.run(run_id).exit_reason == "cancelled"


def test_killed_agent_reports_the_interrupted_run_instead_of_rerunning_it(lab: Lab) -> None:
    run_id = lab.state.queue_run(lab.add_watcher("Interrupted [[hang]]"))
    agent = lab.start_agent()
    pid = first_cli_pid(lab)
    scratch = lab.home / "state" / "runs"
    assert any(scratch.rglob("mcp.json"))  # the per-run MCP config, holding the run secret
    agent.kill()
    agent.communicate()
    assert alive(pid)  # the CLI outlived the agent...
    assert journal_rows(lab.home)[run_id]["state"] == "claimed"
    result = lab.run_agent("run", "--once")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: not alive(pid), what="the orphaned CLI to be stopped by the next agent")
    assert not any(scratch.iterdir())  # ...and the config file it kept is gone
    run = lab.state.run(run_id)
    assert run.status == "failed"
    assert run.exit_reason == "crash"
    assert "stopped before it could record this run's result" in (run.error or "")
    assert len(lab.executions()) == 1  # never executed twice


def test_undelivered_result_waits_in_the_journal_and_is_sent_on_the_next_start(lab: Lab) -> None:
    run_id = lab.state.queue_run(lab.add_watcher("Deliver me"))
    lab.state.faults.add(Fault(route="complete", kind="status", status=503, times=None))
    result = lab.run_agent("run", "--once")
    assert result.returncode == 4, result.stderr
    row = journal_rows(lab.home)[run_id]
    assert (row["state"], row["output"]) == ("finished", "Summary: Deliver me")
    status = json.loads(lab.run_agent("status", "--json").stdout)
    assert [b["run_id"] for b in status["backlog"]] == [run_id]
    lab.state.faults.clear()
    result = lab.run_agent("run", "--once")
    assert result.returncode == 0, result.stderr
    run = lab.state.run(run_id)
    assert (run.status, run.output, run.completions_committed) == (
        "completed",
        "Summary: Deliver me",
        1,
    )
    assert len(lab.executions()) == 1


def test_rejected_result_becomes_a_visible_dead_letter(lab: Lab) -> None:
    run_id = lab.state.queue_run(lab.add_watcher("Rejected"))
    lab.state.faults.add(Fault(route="complete", kind="status", status=404, times=None))
    result = lab.run_agent("run", "--once")
    assert result.returncode == 1
    status = json.loads(lab.run_agent("status", "--json").stdout)
    assert [d["run_id"] for d in status["dead_letters"]] == [run_id]
    shown = lab.run_agent("history", "--run", str(run_id))
    assert "Summary: Rejected" in shown.stdout
    assert "HTTP 404" in shown.stdout
    again = lab.run_agent("run", "--once")  # not retried forever
    assert again.returncode == 0
    assert lab.state.run(run_id).completion_attempts == 1


def test_success_the_server_keeps_refusing_is_closed_as_failed(lab: Lab) -> None:
    """Two runs for the same window make every success report a 500
    (docs/protocol.md, "What a real server does")."""
    lab.config["server_error_budget"] = 2
    watcher = lab.add_watcher("Same window twice")
    window = {"window_start": "2026-11-26T00:00:00.000Z", "window_end": "2026-11-27T00:00:00.000Z"}
    first = lab.state.queue_run(watcher, dispatch_source="manual", **window)
    assert lab.run_agent("run", "--once").returncode == 0
    second = lab.state.queue_run(watcher, dispatch_source="manual", **window)
    result = lab.run_agent("run", "--once")
    assert result.returncode == 0, result.stderr
    assert lab.state.run(first).status == "completed"
    run = lab.state.run(second)
    assert run.status == "failed"
    assert "duplicate key value" in (run.error or "")
    assert journal_rows(lab.home)[second]["output"] == "Summary: Same window twice"


def test_second_agent_for_the_same_home_exits_2_naming_the_pid(lab: Lab) -> None:
    agent = lab.start_agent()
    wait_for(lambda: _status(lab).get("pid") == agent.pid, what="the first agent to start")
    second = lab.run_agent("run")
    assert second.returncode == 2
    assert f"PID {agent.pid}" in second.stderr
    code, err = lab.stop_agent(agent)
    assert code == 0, err


def test_trigger_makes_the_running_agent_poll_at_once(lab: Lab) -> None:
    lab.state.next_poll_seconds = 3600
    watcher = lab.add_watcher("Run me now")
    lab.state.add_token(bound_worker_id="linux:test-device", token="owl_pat_" + "b" * 32)
    agent = lab.start_agent()
    wait_for(lambda: _status(lab).get("state") == "idle", what="the agent to go idle")
    result = lab.run_agent("trigger", watcher, DEVICE_AGENT_TOKEN="owl_pat_" + "b" * 32)
    assert result.returncode == 0, result.stderr
    assert "queued, server status 'pending'" in result.stdout  # the server's word, no promise
    assert "asked the running agent to poll now" in result.stdout
    wait_for(
        lambda: any(r.status == "completed" for r in lab.state.runs()),
        what="the triggered run to complete long before the next scheduled poll",
    )
    code, err = lab.stop_agent(agent)
    assert code == 0, err


def _status(lab: Lab) -> dict[str, Any]:
    """What the running agent says over its control socket; {} while none answers."""
    try:
        return request(socket_path(lab.home / "state"), "status")
    except ControlError:
        return {}


def test_once_drains_on_sigterm_like_the_loop(lab: Lab) -> None:
    lab.config["shutdown_grace_seconds"] = 0.3
    run_id = lab.state.queue_run(lab.add_watcher("Never ends [[hang]]"))
    agent = lab.start_agent("--once")
    pid = first_cli_pid(lab)
    code, err = lab.stop_agent(agent)
    assert code == 0, err
    assert not alive(pid)
    assert lab.state.run(run_id).exit_reason == "cancelled"


def test_a_run_whose_every_report_is_refused_is_not_heartbeated_forever(lab: Lab) -> None:
    lab.config.update(server_error_budget=2, heartbeat_seconds=0.1, max_backoff_seconds=0.2)
    run_id = lab.state.queue_run(lab.add_watcher("Refused every time"))
    lab.state.faults.add(Fault(route="complete", kind="status", status=500, times=None))
    agent = lab.start_agent()
    # success twice, then the failure report twice: the budget is spent
    wait_for(lambda: lab.state.run(run_id).completion_attempts >= 4, what="4 refused reports")
    beats = lab.state.run(run_id).heartbeats
    wait_for(lambda: lab.state.run(run_id).completion_attempts >= 8, what="more retries")
    assert lab.state.run(run_id).heartbeats <= beats + 1  # at most one beat was in flight
    code, err = lab.stop_agent(agent)
    assert code == 0, err
    assert journal_rows(lab.home)[run_id]["state"] == "finished"  # still queued, never lost


def test_an_outage_never_turns_a_success_into_a_failure(lab: Lab) -> None:
    lab.config.update(server_error_budget=2, max_backoff_seconds=0.2)
    run_id = lab.state.queue_run(lab.add_watcher("Survive the deploy"))
    lab.state.faults.add(Fault(route="complete", kind="status", status=503, times=5))
    lab.state.faults.add(Fault(route="complete", kind="status", status=502, times=3))
    agent = lab.start_agent()
    wait_for(lambda: lab.state.run(run_id).status in ("completed", "failed"), what="a report")
    code, err = lab.stop_agent(agent)
    assert code == 0, err
    run = lab.state.run(run_id)
    assert (run.status, run.output) == ("completed", "Summary: Survive the deploy")
    assert run.completion_attempts == 9
