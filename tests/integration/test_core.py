"""The real agent, as a process, against the dev server over loopback (issue: the core)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from device_agent.devserver import Fault
from tests.support.agent import journal_rows
from tests.support.lab import WORKER_ID, Lab
from tests.support.processes import alive
from tests.support.waiting import wait_for


def test_several_runs_are_each_completed_once_with_their_output(lab: Lab) -> None:
    names = ["Inbox digest", "Release watch", "Flaky tests"]
    runs = {}
    for name in names:
        watcher = lab.add_watcher(f"Summarise {name} for me.", name=name)
        runs[lab.state.queue_run(watcher)] = name
    lab.config["concurrency"] = 2
    agent = lab.start_agent()
    wait_for(
        lambda: all(lab.state.run(r).status == "completed" for r in runs), what="3 completions"
    )
    code, err = lab.stop_agent(agent)
    assert code == 0, err
    for run_id, name in runs.items():
        run = lab.state.run(run_id)
        assert run.completions_committed == 1
        assert run.output == f"Summary: Summarise {name} for me."
        assert run.claimed_by == WORKER_ID
    assert len(lab.executions()) == 3
    assert {row["state"] for row in journal_rows(lab.home).values()} == {"acknowledged"}


def test_lost_ack_after_commit_ends_at_409_and_counts_as_done(lab: Lab) -> None:
    run_id = lab.state.queue_run(lab.add_watcher("Check the release notes."))
    lab.state.faults.add(Fault(route="complete", kind="drop_after_commit", times=1))
    result = lab.run_agent("run", "--once")
    assert result.returncode == 0, result.stderr
    run = lab.state.run(run_id)
    assert run.status == "completed"
    assert run.completions_committed == 1
    assert run.completion_attempts == 2  # the lost ack, then the retry that got 409
    row = journal_rows(lab.home)[run_id]
    assert (row["state"], row["answer"]) == ("acknowledged", "already final")
    assert "earlier post" in row["server_message"]


def test_heartbeat_409_kills_the_cli_and_reports_nothing(lab: Lab) -> None:
    run_id = lab.state.queue_run(lab.add_watcher("Watch forever [[hang]]"))
    agent = lab.start_agent()
    pid = wait_for(lambda: [e["pid"] for e in lab.executions()], what="the CLI to start")[0]
    lab.state.cancel_run(run_id)
    wait_for(lambda: not alive(pid), what="the CLI to be killed")
    wait_for(
        lambda: journal_rows(lab.home).get(run_id, {"state": ""})["state"] == "abandoned",
        what="the run to be marked abandoned",
    )
    assert journal_rows(lab.home)[run_id]["exit_reason"] == "cancelled"  # kept, not reported
    code, err = lab.stop_agent(agent)
    assert code == 0, err
    run = lab.state.run(run_id)
    assert run.status == "cancelled"
    assert run.completion_attempts == 0


def test_malformed_payloads_fail_clearly_and_a_later_good_run_completes(lab: Lab) -> None:
    good_payload = _template_payload()
    bad = {
        "missing watcher": {k: v for k, v in good_payload.items() if k != "watcher"},
        "no prompt": _with(good_payload, ["watcher", "prompt"], None),
        "bad window": _with(good_payload, ["event", "payload", "window_start"], "yesterday"),
        "wrong type": _with(good_payload, ["watcher", "execution_config"], "fast"),
        "not an object": "garbage",
    }
    bad_ids = {
        lab.state.queue_raw_run(
            pinned_worker_id=WORKER_ID, run_type="watcher", payload=payload
        ): why
        for why, payload in bad.items()
    }
    good_id = lab.state.queue_run(lab.add_watcher("A good prompt after the bad ones."))
    agent = lab.start_agent()
    wait_for(lambda: lab.state.run(good_id).status == "completed", what="the good run")
    wait_for(lambda: all(lab.state.run(r).status == "failed" for r in bad_ids), what="bad runs")
    code, err = lab.stop_agent(agent)
    assert code == 0, err
    errors = {why: lab.state.run(r).error or "" for r, why in bad_ids.items()}
    assert "payload.watcher is missing" in errors["missing watcher"]
    assert "has no prompt" in errors["no prompt"]
    assert "window_start" in errors["bad window"]
    assert "execution_config" in errors["wrong type"]
    assert "payload is missing or not an object" in errors["not an object"]
    assert len(lab.executions()) == 1  # only the good run reached a CLI


def test_unknown_run_type_is_failed_through_the_generic_route(lab: Lab) -> None:
    run_id = lab.state.queue_raw_run(pinned_worker_id=WORKER_ID, run_type="sync", payload={})
    result = lab.run_agent("run", "--once")
    assert result.returncode == 0, result.stderr
    run = lab.state.run(run_id)
    assert run.status == "failed"
    assert "run_type='sync'" in (run.error or "")
    assert "does not handle" in result.stderr


def test_once_with_nothing_to_do_polls_once_and_exits_0(lab: Lab) -> None:
    result = lab.run_agent("run", "--once")
    assert result.returncode == 0, result.stderr
    polls = [r for r in lab.state.requests if r.path == "/api/workers/poll"]
    assert len(polls) == 1  # it did not wait for a next poll
    assert lab.executions() == []


def test_claude_is_error_with_exit_0_is_reported_as_failed(lab: Lab) -> None:
    run_id = lab.state.queue_run(lab.add_watcher("Try it [[is_error]]"))
    result = lab.run_agent("run", "--once")
    assert result.returncode == 0, result.stderr
    run = lab.state.run(run_id)
    assert run.status == "failed"
    assert "Not logged in · Please run /login" in (run.error or "")


def test_refused_token_exits_3_with_advice(lab: Lab) -> None:
    result = lab.run_agent("run", "--once", DEVICE_AGENT_TOKEN="owl_pat_" + "x" * 32)
    assert result.returncode == 3
    assert "device-agent login" in result.stderr


def test_no_token_exits_3_before_any_request(lab: Lab) -> None:
    before = len(lab.state.requests)
    result = lab.run_agent("run", "--once", DEVICE_AGENT_TOKEN="")
    assert result.returncode == 3
    assert "no token" in result.stderr
    assert len(lab.state.requests) == before


def test_unreachable_server_exits_4(lab: Lab) -> None:
    result = lab.run_agent("run", "--once", DEVICE_AGENT_SERVER="http://127.0.0.1:9")
    assert result.returncode == 4, result.stderr


def test_bad_config_exits_2_naming_the_key(lab: Lab) -> None:
    lab.config["concurency"] = 2
    result = lab.run_agent("run", "--once")
    assert result.returncode == 2
    assert "unknown setting 'concurency'" in result.stderr


def test_token_never_reaches_logs_or_the_cli(lab: Lab) -> None:
    lab.state.queue_run(lab.add_watcher("Check my inbox."))
    result = lab.run_agent("run", "--once", "--verbose")
    assert result.returncode == 0, result.stderr
    logs = "".join(p.read_text() for p in (lab.home / "logs").iterdir())
    assert lab.token not in logs + result.stderr + result.stdout
    for execution in lab.executions():
        assert lab.token not in " ".join(execution["argv"])


def test_doctor_checks_server_token_and_the_default_cli(lab: Lab) -> None:
    result = lab.run_agent("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ok  ] server reachable" in result.stdout
    assert "[ok  ] token accepted" in result.stdout
    assert "[ok  ] default agent 'claude-code'" in result.stdout
    assert "(2.1.337 (Claude Code); profile checked against 2.1.337)" in result.stdout


def test_doctor_warns_when_a_cli_is_not_the_version_its_profile_was_checked_against(
    lab: Lab,
) -> None:
    result = lab.run_agent("doctor", FAKE_VERSION="2.2.0")
    assert result.returncode == 0, result.stdout + result.stderr  # a warning, not a failure
    line = next(x for x in result.stdout.splitlines() if "default agent 'claude-code'" in x)
    assert line.startswith("[WARN]")
    assert "(2.2.0 (Claude Code); profile checked against 2.1.337: this newer version" in line


def test_doctor_names_a_refused_token(lab: Lab) -> None:
    result = lab.run_agent("doctor", DEVICE_AGENT_TOKEN="owl_pat_" + "x" * 32)
    assert result.returncode == 3
    assert "[FAIL] token accepted" in result.stdout


# ----------------------------------------------------------------- helpers


def _template_payload() -> dict:  # type: ignore[type-arg]
    """A realistic watcher payload (docs/protocol.md, "Poll and claim"), to break at will."""
    return {
        "watcher": {
            "id": "900",
            "name": "template",
            "slug": "template",
            "agent_kind": "claude-code",
            "notification_channel": "canvas",
            "notification_priority": "normal",
            "execution_config": None,
            "prompt": "Template prompt",
        },
        "event": {
            "trigger_event_id": None,
            "fired_at": "2026-11-27T09:00:00Z",
            "payload": {
                "watcher_id": 900,
                "window_start": "2026-11-27T08:00:00Z",
                "window_end": "2026-11-27T09:00:00Z",
                "dispatch_source": "scheduled",
                "agent_kind": "claude-code",
                "kind": "digest",
            },
        },
        "context": {"device": {"worker_id": "uuid"}, "user": {"user_id": "u"}},
    }


def _with(payload: dict, path: list[str], value: object) -> dict:  # type: ignore[type-arg]
    import copy

    changed = copy.deepcopy(payload)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


def test_demo_runs_offline_and_reports_every_run(isolated_home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICE_AGENT_")}
    env["DEVICE_AGENT_HOME"] = str(isolated_home)
    result = subprocess.run(
        [sys.executable, "-m", "device_agent", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if " demo " in line]
    assert len(rows) == 3
    assert all("completed" in row for row in rows)
    assert '"Run now"' in result.stdout
    assert (isolated_home / "state" / "demo" / "logs" / "device-agent.log").exists()


def test_every_log_line_of_a_run_carries_its_run_id(lab: Lab) -> None:
    run_id = lab.state.queue_run(lab.add_watcher("Tag my logs"))
    assert lab.run_agent("run", "--once").returncode == 0
    lines = [json.loads(line) for line in (lab.home / "logs" / "device-agent.log").open()]
    of_run = [
        line
        for line in lines
        if line.get("logger", "").endswith(("executor", "heartbeat", "delivery"))
    ]
    assert of_run, lines
    assert all(line.get("run_id") == run_id for line in of_run)


def test_a_damaged_journal_is_named_with_what_to_do(lab: Lab) -> None:
    journal = lab.home / "state" / "journal.sqlite3"
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_bytes(b"this is not a database" * 100)
    result = lab.run_agent("run", "--once")
    assert result.returncode == 1
    assert f"the journal {journal} cannot be used" in result.stderr
    assert "move it aside" in result.stderr
    assert "Traceback" not in result.stderr
