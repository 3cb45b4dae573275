"""What a real Lobu server does that a kind server would not: NULs, the warm-up, the tool
proxy's actions."""

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


# ------------------------------------------ the tool proxy, as Lobu 1.6.0 answers (issue 21, 1)

UNKNOWN_GET = (
    "Unknown action: get. Valid actions: complete_window, create, create_from_version, "
    "create_version, delete, get_component_reference, get_feedback, get_version_details, "
    "get_versions, set_reaction_script, submit_feedback, trigger, update, upgrade."
)


def test_manage_watchers_has_no_get_action(state: DevState, client: httpx.Client) -> None:
    wid = add_watcher(state)
    answer = client.post("/api/dev/manage_watchers", json={"action": "get", "watcher_id": wid})
    assert (answer.status_code, answer.json()) == (400, {"error": UNKNOWN_GET})
    assert state.runs() == []


def test_get_watcher_says_which_device_a_watcher_is_pinned_to(
    state: DevState, client: httpx.Client
) -> None:
    wid = add_watcher(state)
    unpinned = state.add_watcher(prompt="Nowhere", name="Unpinned")
    device = state.find_device(WID)
    assert device is not None
    pinned = client.post("/api/dev/get_watcher", json={"watcher_id": wid})
    assert pinned.status_code == 200
    body = pinned.json()
    assert body["watcher"]["watcher_id"] == wid
    assert body["watcher"]["device_worker_id"] == device.id  # the UUID /api/me/devices lists
    assert isinstance(body["windows"], list)
    nowhere = client.post("/api/dev/get_watcher", json={"watcher_id": unpinned}).json()
    assert nowhere["watcher"]["device_worker_id"] is None


def test_get_watcher_of_an_unknown_id_answers_without_a_watcher(client: httpx.Client) -> None:
    answer = client.post("/api/dev/get_watcher", json={"watcher_id": "999"})
    assert answer.status_code == 200
    assert "watcher" not in answer.json()
    assert answer.json()["windows"] == []


def test_list_watchers_lists_each_active_watchers_pinning(
    state: DevState, client: httpx.Client
) -> None:
    wid = add_watcher(state)
    paused = add_watcher(state, active=False)
    device = state.find_device(WID)
    assert device is not None
    rows = client.post("/api/dev/list_watchers", json={}).json()["watchers"]
    assert [(r["watcher_id"], r["device_worker_id"]) for r in rows] == [(wid, device.id)]
    only = client.post("/api/dev/list_watchers", json={"watcher_id": paused, "status": "paused"})
    assert [r["watcher_id"] for r in only.json()["watchers"]] == [paused]
