"""What a real Lobu server does that a kind server would not: NULs, the warm-up."""

from __future__ import annotations

import httpx
import pytest

from device_agent.devserver import DevServer, DevState, run_from_arguments
from device_agent.devserver import add_dev_server_arguments as add_arguments
from device_agent.devserver.routes_watcher import DUPLICATE_WINDOW
from tests.support.devserver import (
    WID,
    add_watcher,
    client_for,
    complete,
    poll,
    queue_and_claim,
)
from tests.support.waiting import wait_for

NUL_IN_OUTPUT = "unsupported Unicode escape sequence"
NUL_IN_ERROR = 'invalid byte sequence for encoding "UTF8": 0x00'


def test_a_nul_in_the_output_of_a_success_is_refused_on_every_try(
    state: DevState, client: httpx.Client
) -> None:
    run_id = queue_and_claim(state, client)
    for _ in range(2):
        answer = complete(client, run_id, output="before\x00after")
        assert (answer.status_code, answer.json()) == (500, {"error": NUL_IN_OUTPUT})
    assert state.run(run_id).status == "running"


def test_a_failure_report_drops_the_output_so_its_nul_does_not_matter(
    state: DevState, client: httpx.Client
) -> None:
    run_id = queue_and_claim(state, client)
    answer = complete(client, run_id, output="before\x00after", error="refused")
    assert answer.json() == {"ok": True, "status": "failed"}


def test_a_nul_in_the_error_is_refused_on_every_try(state: DevState, client: httpx.Client) -> None:
    run_id = queue_and_claim(state, client)
    for _ in range(2):
        answer = complete(client, run_id, error="err\x00bad", exit_code=2)
        assert (answer.status_code, answer.json()) == (500, {"error": NUL_IN_ERROR})
    assert complete(client, run_id, error="err bad").json()["status"] == "failed"


def test_the_nul_is_found_before_the_duplicate_window(
    state: DevState, client: httpx.Client
) -> None:
    window = {"window_start": "2025-06-01T00:00:00.000Z", "window_end": "2025-06-08T00:00:00.000Z"}
    wid = add_watcher(state)
    first = state.queue_run(wid, **window)
    poll(client)
    assert complete(client, first).status_code == 200
    again = state.queue_run(wid, **window)
    poll(client)
    assert complete(client, again, output="\x00").json() == {"error": NUL_IN_OUTPUT}
    assert complete(client, again).json() == {"error": DUPLICATE_WINDOW}


@pytest.fixture
def warming_state() -> DevState:
    return DevState(create_checkin_watcher=False, warmup_seconds=60)


def test_a_poll_abandoned_during_the_warm_up_still_claims_its_run(warming_state: DevState) -> None:
    state = warming_state
    token = state.add_token()
    wid = state.add_watcher("Hi", pinned_worker_id=WID)
    run_id = state.queue_run(wid)
    with DevServer(state).running_in_thread() as server:
        assert state.warmup_left() > 0
        with client_for(server, token) as http:
            # Heartbeats and other routes answer while polls are held.
            assert http.post("/api/workers/heartbeat", json={}).status_code == 500
            body = {"worker_id": WID, "platform": "linux", "capabilities": {}}
            with pytest.raises(httpx.ReadTimeout):
                http.post("/api/workers/poll", json=body, timeout=0.2)
        assert state.run(run_id).status == "pending"  # still held
        assert state.warming_polls == 1
        state.start_warmup(0)  # the server is warm now: the held poll goes on
        wait_for(lambda: state.run(run_id).status == "running", what="the run to be claimed")
        assert state.run(run_id).claimed_by == WID
        assert state.warming_polls == 0


def test_the_warm_up_can_be_armed_through_dev_routes(state: DevState, server: DevServer) -> None:
    with httpx.Client(base_url=server.url) as http:
        assert http.post("/_dev/warmup", json={"seconds": 30}).status_code == 200
        assert state.warmup_left() > 25
        assert http.post("/_dev/warmup", json={"seconds": -1}).status_code == 400
        assert http.post("/_dev/warmup", json={"seconds": 0}).status_code == 200
    assert state.warmup_left() == 0


def test_the_flags_parse_with_their_old_spelling_and_the_new_ones() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    old = parser.parse_args(["--no-demo"])
    flags = ["--no-seed", "--lane", "automation", "--warmup-seconds", "25"]
    new = parser.parse_args([*flags, "--min-app-version", "1.2.0"])
    assert (old.no_seed, old.lane, old.warmup_seconds) == (True, "watcher", 0.0)
    assert (new.no_seed, new.lane, new.warmup_seconds, new.min_app_version) == (
        True,
        "automation",
        25.0,
        "1.2.0",
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--lane", "behaviors"])


def test_a_server_that_cannot_listen_says_why_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run_from_arguments(parser.parse_args(["--host", "10.0.0.1"])) == 1
    assert "only binds loopback addresses" in capsys.readouterr().err
