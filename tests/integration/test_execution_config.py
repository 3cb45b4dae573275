"""A bad `execution_config` from the server fails that run, never the agent's loop."""

from __future__ import annotations

from tests.support.lab import Lab
from tests.support.waiting import wait_for


def test_a_bad_execution_config_fails_its_run_and_the_agent_goes_on(lab: Lab) -> None:
    # The dev server sends NaN as JSON's non-standard `NaN`, which Python's json reads.
    bad = {
        "nan": {"timeout_seconds": float("nan")},
        "inf": {"max_budget_usd": float("inf")},
        "negative": {"timeout_seconds": -1},
        "wrong type": {"timeout_seconds": "soon"},
    }
    bad_ids = {
        lab.state.queue_run(lab.add_watcher(f"Bad {why}", execution_config=config)): why
        for why, config in bad.items()
    }
    good_id = lab.state.queue_run(lab.add_watcher("A good prompt after the bad ones."))
    agent = lab.start_agent()
    wait_for(lambda: lab.state.run(good_id).status == "completed", what="the good run")
    wait_for(lambda: all(lab.state.run(r).status == "failed" for r in bad_ids), what="bad runs")
    assert agent.poll() is None  # still running: the loop goes on
    code, err = lab.stop_agent(agent)
    assert code == 0, err
    errors = {why: lab.state.run(r).error for r, why in bad_ids.items()}
    timeout = "execution_config.timeout_seconds must be a number of seconds from 1 to 86400"
    assert errors == {
        "nan": f"{timeout}, got nan",
        "inf": (
            "execution_config.max_budget_usd must be a number of US dollars greater than 0 "
            "and at most 1000000000, got inf"
        ),
        "negative": f"{timeout}, got -1",
        "wrong type": f"{timeout}, got 'soon'",
    }
    assert len(lab.executions()) == 1  # only the good run reached a CLI
