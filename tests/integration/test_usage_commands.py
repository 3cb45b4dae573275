"""What a run cost, as the owner sees it (issue 23): recorded per run in the journal, shown by
`history` and `status`, and the daily limit as `run --once`, `status` and `resume
--past-limit` say it — the real agent as a process, against the dev server."""

from __future__ import annotations

import json
import sqlite3

from tests.support.agent import daemon_status, install_fake
from tests.support.waiting import wait_for

from .conftest import Lab


def usage_rows(lab: Lab) -> list[dict[str, object]]:
    db = sqlite3.connect(lab.home / "state" / "journal.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in db.execute("SELECT * FROM usage ORDER BY run_id")]
    finally:
        db.close()


def test_costs_are_recorded_per_run_and_shown_by_history_and_status(lab: Lab) -> None:
    install_fake(lab.bin_dir, "codex")
    claude = lab.state.queue_run(lab.add_watcher("Digest [[cost=0.25]]", name="Claude digest"))
    assert lab.run_agent("run", "--once").returncode == 0
    codex = lab.state.queue_run(
        lab.add_watcher("Release notes", name="Codex notes", agent_kind="codex")
    )
    assert lab.run_agent("run", "--once").returncode == 0
    rows = usage_rows(lab)
    assert [(r["run_id"], r["agent_kind"], r["finished"]) for r in rows] == [
        (claude, "claude-code", 1),
        (codex, "codex", 1),
    ]
    assert (rows[0]["cost_usd"], rows[0]["tokens_in"], rows[0]["tokens_out"]) == (0.25, 6500, 340)
    assert (rows[1]["cost_usd"], rows[1]["tokens_in"], rows[1]["tokens_out"]) == (None, 2400, 180)

    history = json.loads(lab.run_agent("history", "--json").stdout)
    by_run = {entry["run_id"]: entry["usage"] for entry in history}
    assert by_run[claude]["cost_usd"] == 0.25
    assert by_run[codex] == {
        "rounds": 1,
        "cost_usd": None,
        "cost_partial": True,
        "tokens_in": 2400,
        "tokens_out": 180,
    }
    table = lab.run_agent("history").stdout
    assert "cost" in table.splitlines()[0]
    assert "$0.25" in table
    assert "6.5k/340" in table
    one = lab.run_agent("history", "--run", str(codex)).stdout
    assert "unknown (its CLI reports no cost)" in one
    assert "2,400 in, 180 out" in one

    status = json.loads(lab.run_agent("status", "--json").stdout)  # no daemon: the journal
    today = status["limit"]["today"]
    assert (today["runs"], today["cost_usd"], today["cost_partial"]) == (2, 0.25, True)
    assert today["tokens"] == 6500 + 340 + 2400 + 180
    assert status["limit"]["reached"] is None
    shown = lab.run_agent("status").stdout
    assert "today: 2 runs, $0.25 (partial: 1 run whose CLI reports no cost)" in shown
    assert "daily limit: off" in shown


def test_run_once_at_the_limit_claims_nothing_and_status_says_so(lab: Lab) -> None:
    lab.config["limits"] = {"daily_runs": 1}
    first = lab.state.queue_run(lab.add_watcher("Digest", name="First"))
    assert lab.run_agent("run", "--once").returncode == 0
    second = lab.state.queue_run(lab.add_watcher("Digest", name="Second"))
    result = lab.run_agent("run", "--once")
    assert result.returncode == 0, result.stderr
    assert "daily limit reached (1 of 1 runs); resumes at 00:00" in result.stderr
    assert lab.state.run(first).status == "completed"
    assert (lab.state.run(second).status, lab.state.run(second).claims) == ("pending", 0)
    polls = [r for r in lab.state.requests if r.path == "/api/workers/poll"]
    assert len(polls) == 1  # the second `run --once` did not even poll
    status = json.loads(lab.run_agent("status", "--json").stdout)
    assert status["limit"]["reached"] == "daily limit reached (1 of 1 runs); resumes at 00:00"
    assert status["limit"]["resumes_at"] is not None
    shown = lab.run_agent("status").stdout
    assert "daily limit: 1 run a day" in shown
    assert "DAILY LIMIT: daily limit reached (1 of 1 runs); resumes at 00:00" in shown


def test_resume_past_limit_lets_the_running_agent_go_on_until_the_day_turns(lab: Lab) -> None:
    lab.config["limits"] = {"daily_usd": 0.04}
    lab.config["concurrency"] = 1
    first = lab.state.queue_run(lab.add_watcher("Digest", name="First"))  # costs 0.0421
    agent = lab.start_agent()
    wait_for(lambda: lab.state.run(first).status == "completed", what="the first run")
    wait_for(lambda: daemon_status(lab.home).get("state") == "limit_reached", what="the limit")
    second = lab.state.queue_run(lab.add_watcher("Digest", name="Second"))
    assert daemon_status(lab.home)["limit"]["reached"].startswith(
        "daily limit reached ($0.04 of $0.04)"
    )
    trigger = lab.run_agent("trigger", "2")  # Run now is refused: it would only wait
    assert trigger.returncode == 2
    assert "--past-limit" in trigger.stderr
    result = lab.run_agent("resume", "--past-limit")
    assert result.returncode == 0, result.stderr
    assert "going on past the daily limit until the day turns" in result.stdout
    wait_for(lambda: lab.state.run(second).status == "completed", what="the run, past the limit")
    assert daemon_status(lab.home)["limit"]["past_limit"] is True
    code, err = lab.stop_agent(agent)
    assert code == 0, err
