"""Issue 8, point 8: a journal that cannot be written loses nothing silently.

A real OS error, not a seam: the agent runs under a file-size limit
(RLIMIT_FSIZE) that lets it record claims but not a 4 MiB result, and the
limit is lifted later from outside with prlimit — as if space came back.
"""

from __future__ import annotations

import resource
from typing import Any

import pytest

from tests.support.agent import daemon_status, install_fake, journal_rows
from tests.support.devserver import poll_requests
from tests.support.lab import Lab, stop
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="prlimit is Linux-only")
LIMIT = 1 << 20  # room for the journal and its claims; not for a 4 MiB output


def status(lab: Lab) -> dict[str, Any]:
    return daemon_status(lab.home)


def test_a_full_disk_stops_claims_delivers_the_result_in_hand_and_resumes(lab: Lab) -> None:
    lab.state.next_poll_seconds = 0.5  # the status is looked at between polls
    install_fake(lab.bin_dir, "flood")
    profiles = lab.home / "config" / "executors"
    profiles.mkdir(parents=True)
    (profiles / "flood.toml").write_text('binary = "flood"\n')
    big = lab.state.queue_run(lab.add_watcher("Big output", agent_kind="flood"))
    agent, stderr = lab.start_agent_under_file_limit(LIMIT)

    # The result the journal could not take still reaches the server...
    wait_for(lambda: lab.state.run(big).status == "failed", timeout=120, what="the big result")
    assert "fatal: out of widgets" in (lab.state.run(big).error or "")
    # ...status says why nothing more is taken, and what to do...
    wait_for(lambda: status(lab).get("state") == "journal_unwritable", timeout=60, what="status")
    assert "free some disk space" in status(lab)["detail"]
    # ...and no new run is claimed meanwhile: not even a poll is sent.
    polls_then = poll_requests(lab.state)
    waiting = lab.state.queue_run(lab.add_watcher("Wait for space"))
    assert journal_rows(lab.home)[big]["state"] == "claimed"
    assert lab.state.run(waiting).status == "pending"
    assert poll_requests(lab.state) == polls_then

    resource.prlimit(agent.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)

    wait_for(lambda: lab.state.run(waiting).status == "completed", timeout=120, what="resuming")
    rows = journal_rows(lab.home)
    assert rows[big]["state"] == "acknowledged"  # the journal caught up with what happened
    assert "fatal: out of widgets" in rows[big]["error"]
    code, err = stop(agent, stderr)
    assert code == 0
    assert err.count("the journal cannot be written") == 1, err  # said once
    assert "Traceback" not in err
    assert "no transaction is active" not in err
