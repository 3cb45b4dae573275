"""The dev server over real loopback HTTP: every answer as docs/protocol.md has it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from device_agent.devserver import DevServer, DevState, Fault, serve_forever
from device_agent.devserver.state import NEVER_HEARTBEAT_ERROR, SILENT_HEARTBEAT_ERROR
from tests.support.clock import T0, FakeClock
from tests.support.devserver import (
    WID,
    add_watcher,
    client_for,
    complete,
    heartbeat,
    poll,
    queue_and_claim,
)
from tests.support.waiting import wait_for

# ================================================================== poll


def test_poll_claims_one_run_with_the_watcher_payload(
    state: DevState, client: httpx.Client
) -> None:
    wid = add_watcher(state, execution_config={"timeout_seconds": 60}, notification_channel="both")
    run_id = state.queue_run(wid)

    answer = poll(client)

    assert answer.status_code == 200
    body = answer.json()
    device = state.device(WID)
    assert device is not None
    assert body["run_id"] == run_id
    assert body["run_type"] == "watcher"
    assert body["organization_id"] == state.org.id
    assert "next_poll_seconds" not in body
    watcher = body["payload"]["watcher"]
    assert watcher == {
        "id": wid,
        "name": "Inbox digest",
        "slug": "inbox-digest",  # derived from the name, as a real server does
        "agent_kind": "claude-code",
        "notification_channel": "both",
        "notification_priority": "normal",
        "execution_config": {"timeout_seconds": 60},
        "prompt": "Summarise my inbox",
    }
    event = body["payload"]["event"]
    assert event["trigger_event_id"] is None
    assert event["fired_at"] == "2025-06-15T12:30:00.000Z"
    assert event["payload"] == {
        "watcher_id": int(wid),
        "agent_id": "default",
        "window_start": "2025-06-15T00:00:00.000Z",  # unscheduled: 7-day periods
        "window_end": "2025-06-22T00:00:00.000Z",
        "dispatch_source": "scheduled",
        "version_id": 1,
        "device_worker_id": device.id,
        "agent_kind": "claude-code",
        "kind": "knowledge",
    }
    assert body["payload"]["context"] == {
        "device": {"worker_id": device.id},
        "user": {"user_id": state.user.id},
    }
    run = state.run(run_id)
    assert (run.status, run.claimed_by, run.claims, run.claimed_at) == ("running", WID, 1, T0)
    assert poll(client).json() == {"next_poll_seconds": 10}


def test_poll_claims_oldest_pending_run_of_this_device_only(
    state: DevState, client: httpx.Client
) -> None:
    mine = add_watcher(state)
    other = add_watcher(state, worker_id="macos:other")
    first, _, second = state.queue_run(mine), state.queue_run(other), state.queue_run(mine)

    assert poll(client).json()["run_id"] == first
    assert poll(client).json()["run_id"] == second
    assert poll(client).json() == {"next_poll_seconds": 10}


def test_poll_rejects_bad_bodies(client: httpx.Client) -> None:
    url = "/api/workers/poll"
    invalid = {"error": "Invalid or missing JSON body"}
    assert client.post(url).json() == invalid
    assert client.post(url, content=b"{nope").status_code == 400
    for body in ({}, {"worker_id": ""}, {"worker_id": 7}):
        answer = client.post(url, json=body)
        assert (answer.status_code, answer.json()) == (400, {"error": "worker_id is required"})


def test_unknown_or_missing_token_gets_401(server: DevServer) -> None:
    with client_for(server, "owl_pat_nope") as http:
        answer = poll(http)
    assert answer.status_code == 401
    assert answer.json() == {
        "error": "invalid_token",
        "error_description": "Invalid or expired access token",
    }
    with client_for(server, None) as http:
        assert poll(http).status_code == 401
        assert http.get("/api/me/devices").status_code == 401


def test_token_without_worker_scope_gets_403(state: DevState, server: DevServer) -> None:
    with client_for(server, state.add_token("profile:read mcp:read")) as http:
        answer = poll(http)
    assert answer.status_code == 403
    assert answer.json() == {"error": "Worker token missing device_worker:run scope"}


def test_bound_token_must_poll_as_its_worker(state: DevState, server: DevServer) -> None:
    with client_for(server, state.add_token(bound_worker_id=WID)) as http:
        mismatch = poll(http, worker_id="linux:other")
        assert poll(http).status_code == 200
    assert mismatch.status_code == 403
    assert mismatch.json() == {
        "error": "worker_id_mismatch",
        "error_description": f"this token is bound to worker_id '{WID}'",
    }


def test_platform_is_fixed_by_the_first_poll(state: DevState, client: httpx.Client) -> None:
    add_watcher(state)  # creates the device before any poll, without a platform
    assert poll(client, platform="linux").status_code == 200
    answer = poll(client, platform="macos")
    assert answer.status_code == 403
    assert answer.json()["error"] == "platform_mismatch"
    assert poll(client, platform=None).status_code == 200
    device = state.device(WID)
    assert device is not None
    assert device.platform == "linux"


def test_first_poll_of_a_new_device_creates_the_checkin_watcher() -> None:
    state = DevState()  # create_checkin_watcher defaults to True
    with DevServer(state).running_in_thread() as live, client_for(live, state.add_token()) as http:
        assert poll(http).json() == {"next_poll_seconds": 10}
        poll(http)
    (watcher,) = state.watchers()
    device = state.device(WID)
    assert device is not None
    assert watcher.device_id == device.id
    assert (watcher.name, watcher.agent_kind, watcher.schedule) == (
        "Daily check-in",
        None,
        "0 9 * * *",
    )
    assert state.runs() == []


def test_concurrent_polls_claim_each_run_exactly_once(state: DevState, server: DevServer) -> None:
    wid = add_watcher(state)
    queued = {state.queue_run(wid) for _ in range(5)}
    token = state.add_token()

    async def storm() -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=5) as http:
            body = {"worker_id": WID, "platform": "linux"}
            answers = await asyncio.gather(
                *(http.post("/api/workers/poll", json=body) for _ in range(20))
            )
        return [answer.json() for answer in answers]

    answers = asyncio.run(storm())

    claimed = [a["run_id"] for a in answers if "run_id" in a]
    assert sorted(claimed) == sorted(queued)
    assert sum(1 for a in answers if a == {"next_poll_seconds": 10}) == 15
    assert all(state.run(run_id).claims == 1 for run_id in queued)


# ============================================================ heartbeat


def test_heartbeat_answers(state: DevState, client: httpx.Client, clock: FakeClock) -> None:
    run_id = queue_and_claim(state, client)
    clock.advance(5)

    ok = heartbeat(client, run_id)
    assert (ok.status_code, ok.json()) == (200, {"continue": True})
    run = state.run(run_id)
    assert (run.heartbeats, run.last_heartbeat_at) == (1, T0 + 5)

    assert heartbeat(client, run_id, worker_id="linux:other").json() == {"error": "Forbidden"}
    assert heartbeat(client, run_id, worker_id="").json() == {"error": "worker_id is required"}
    missing = heartbeat(client, 999)
    assert (missing.status_code, missing.json()) == (404, {"error": "Run not found"})
    assert client.post("/api/workers/heartbeat", content=b"{").status_code == 500

    state.cancel_run(run_id)
    gone = heartbeat(client, run_id)
    assert (gone.status_code, gone.json()) == (409, {"error": "Run is not in progress"})
    assert state.run(run_id).heartbeats == 1


# =========================================================== completion


def test_successful_completion_then_retry_gets_409(state: DevState, client: httpx.Client) -> None:
    run_id = queue_and_claim(state, client)

    answer = complete(client, run_id, output="3 new mails", exit_code=0)
    assert (answer.status_code, answer.json()) == (200, {"ok": True, "status": "completed"})
    retry = complete(client, run_id, output="3 new mails")
    assert (retry.status_code, retry.json()) == (409, {"error": "Run is not in progress"})

    run = state.run(run_id)
    assert run.status == "completed"
    assert run.output == "3 new mails"
    assert run.extracted_data == {
        "kind": "device_cli_output",
        "output": "3 new mails",
        "agent_kind": "claude-code",
    }
    assert (run.exit_code, run.exit_reason, run.duration_ms, run.error) == (0, "ok", 1234, None)
    assert (run.completion_attempts, run.completions_committed) == (2, 1)
    assert heartbeat(client, run_id).status_code == 409


def test_failure_report_stores_the_error_and_drops_output(
    state: DevState, client: httpx.Client
) -> None:
    run_id = queue_and_claim(state, client)

    answer = complete(
        client, run_id, output="partial", error="claude exited 1", exit_code=1, exit_reason="crash"
    )

    assert answer.json() == {"ok": True, "status": "failed"}
    run = state.run(run_id)
    assert (run.status, run.error, run.output, run.exit_reason) == (
        "failed",
        "claude exited 1",
        None,
        "crash",
    )
    assert complete(client, run_id, error="again").status_code == 409


@pytest.mark.parametrize(
    ("window_start", "message"),
    [
        (123, "approved_input.window_start must be an ISO timestamp string"),
        ("yesterday-ish", "approved_input.window_start is not a valid ISO timestamp"),
    ],
)
def test_malformed_window_gets_400_and_fails_the_run(
    state: DevState, client: httpx.Client, window_start: object, message: str
) -> None:
    run_id = queue_and_claim(state, client, window_start=window_start)

    # The window check runs before the error check: a failure report gets it too.
    answer = complete(client, run_id, error="could not parse the payload")

    assert (answer.status_code, answer.json()) == (400, {"error": message})
    run = state.run(run_id)
    assert run.status == "failed"
    assert run.error == f"Invalid completion payload: {message}"
    assert complete(client, run_id).status_code == 409


def test_exit_code_that_is_not_an_integer_gets_500(state: DevState, client: httpx.Client) -> None:
    run_id = queue_and_claim(state, client)

    answer = complete(client, run_id, exit_code="zero")

    assert answer.status_code == 500
    assert state.run(run_id).status == "running"
    assert complete(client, run_id, exit_code=None).json()["status"] == "completed"


def test_second_success_for_the_same_window_gets_500_until_a_failure_closes_it(
    state: DevState, client: httpx.Client
) -> None:
    wid = add_watcher(state)
    first, second = state.queue_run(wid), state.queue_run(wid)  # same hour window
    assert poll(client).json()["run_id"] == first
    assert complete(client, first).status_code == 200
    assert poll(client).json()["run_id"] == second

    for _ in range(2):
        answer = complete(client, second)
        assert answer.status_code == 500
        assert answer.json() == {
            "error": 'duplicate key value violates unique constraint "insight_windows_insight_id_'
            'granularity_window_start_key"'
        }
    assert state.run(second).status == "running"
    assert heartbeat(client, second).json() == {"continue": True}
    closed = complete(client, second, error="server kept answering 500 duplicate key")
    assert closed.json() == {"ok": True, "status": "failed"}


def test_completion_rejections(state: DevState, client: httpx.Client, server: DevServer) -> None:
    run_id = queue_and_claim(state, client)
    assert complete(client, 0).json() == {"error": "Invalid runId"}
    not_numeric = complete(client, "abc")  # the middleware's \d+ pattern answers first
    assert (not_numeric.status_code, not_numeric.json()) == (
        403,
        {"error": "Endpoint not available to user-scoped workers"},
    )
    assert complete(client, 999).status_code == 404
    assert complete(client, run_id, worker_id="linux:other").json() == {"error": "Forbidden"}
    assert complete(client, run_id, worker_id="").status_code == 400
    bad_body = client.post(f"/api/workers/me/runs/{run_id}/complete-watcher", content=b"[")
    assert bad_body.json() == {"error": "Invalid or missing JSON body"}
    with client_for(server, state.add_token(bound_worker_id="linux:elsewhere")) as bound:
        mismatch = complete(bound, run_id)
    assert mismatch.status_code == 403
    assert mismatch.json()["error"] == "worker_id_mismatch"
    assert state.run(run_id).status == "running"
    assert state.run(run_id).completion_attempts == 4


def test_non_watcher_runs_complete_through_the_generic_route(
    state: DevState, client: httpx.Client
) -> None:
    run_id = state.queue_raw_run(WID, run_type="sync", payload={"connector_key": "x"})
    answer = poll(client).json()
    assert answer["run_type"] == "sync"
    assert answer["payload"] == {"connector_key": "x"}

    wrong_route = complete(client, run_id)
    assert (wrong_route.status_code, wrong_route.json()) == (409, {"error": "Not a watcher run"})
    body = {"run_id": run_id, "worker_id": WID, "status": "failed", "error_message": "unsupported"}
    done = client.post("/api/workers/complete", json=body)
    assert (done.status_code, done.json()) == (200, {"success": True})
    assert (state.run(run_id).status, state.run(run_id).error) == ("failed", "unsupported")


def test_raw_payload_is_handed_out_verbatim(state: DevState, client: httpx.Client) -> None:
    run_id = state.queue_raw_run(WID, payload=["not", "an", "object"])
    assert poll(client).json()["payload"] == ["not", "an", "object"]
    assert complete(client, run_id, error="payload is not an object").status_code == 200


def test_anonymous_local_server_mode_trusts_requests_without_a_token(clock: FakeClock) -> None:
    state = DevState(create_checkin_watcher=False, allow_anonymous=True, clock=clock)
    with DevServer(state).running_in_thread() as live:
        with client_for(live, state.add_token()) as http:
            run_id = queue_and_claim(state, http)
            assert complete(http, run_id).status_code == 200
        with client_for(live, None) as anonymous:
            again = complete(anonymous, run_id)
    # A real server: only an anonymous caller ever sees `idempotent: true`.
    assert again.json() == {"ok": True, "status": "completed", "idempotent": True}


# ============================================================== trigger


def test_trigger_errors(state: DevState, server: DevServer, client: httpx.Client) -> None:
    def trigger(http: httpx.Client, watcher_id: str) -> tuple[int, Any]:
        answer = http.post(f"/api/workers/me/watchers/{watcher_id}/trigger")
        return answer.status_code, answer.json()["error"]

    mine = add_watcher(state)
    elsewhere = add_watcher(state, worker_id="macos:other")
    paused = add_watcher(state, active=False)
    agentless = add_watcher(state, agent_id=None)
    assert trigger(client, mine) == (403, "Token is not bound to a device worker")
    with client_for(server, state.add_token(bound_worker_id="linux:new")) as unpolled:
        assert trigger(unpolled, mine) == (404, "Device not registered yet — poll first")
    with client_for(server, state.add_token(bound_worker_id=WID)) as bound:
        assert trigger(bound, "999") == (404, "Watcher not found")
        assert trigger(bound, elsewhere) == (403, "Watcher is not pinned to this device")
        assert trigger(bound, paused) == (409, "Watcher is not active")
        assert trigger(bound, agentless) == (409, "Watcher has no agent assigned")
        assert trigger(bound, "abc") == (403, "Endpoint not available to user-scoped workers")


def test_trigger_queues_a_manual_run_once(state: DevState, server: DevServer) -> None:
    wid = add_watcher(state)
    with client_for(server, state.add_token(bound_worker_id=WID)) as bound:
        url = f"/api/workers/me/watchers/{wid}/trigger"
        first = bound.post(url).json()
        again = bound.post(url).json()
        claimed = poll(bound).json()
        while_running = bound.post(url).json()

    assert first == {
        "run_id": first["run_id"],
        "status": "pending",
        "already_queued": False,
        "queued_at": "2025-06-15T12:30:00.000Z",
    }
    assert (again["run_id"], again["already_queued"]) == (first["run_id"], True)
    assert claimed["run_id"] == first["run_id"]
    approved = claimed["payload"]["event"]["payload"]
    assert approved["dispatch_source"] == "manual"
    assert (approved["window_start"], approved["window_end"]) == (
        "2025-06-08T00:00:00.000Z",  # the last full 7-day period of an unscheduled watcher
        "2025-06-15T00:00:00.000Z",
    )
    assert while_running["run_id"] == first["run_id"]
    assert (while_running["status"], while_running["already_queued"]) == ("running", True)
    assert len(state.runs()) == 1


def test_manage_watchers_trigger_works_with_unbound_tokens(
    state: DevState, client: httpx.Client
) -> None:
    wid = add_watcher(state)
    body = {"action": "trigger", "watcher_id": wid}

    answer = client.post("/api/dev/manage_watchers", json=body)

    run_id = state.runs()[0].id
    assert answer.json() == {
        "action": "trigger",
        "watcher_id": wid,
        "run_id": run_id,
        "status": "pending",
    }
    assert client.post("/api/nope/manage_watchers", json=body).status_code == 404
    unknown = client.post("/api/dev/manage_watchers", json={"action": "trigger"})
    assert (unknown.status_code, unknown.json()) == (400, {"error": "Watcher None not found."})
    other = client.post("/api/dev/manage_watchers", json={"action": "trigger", "watcher_id": "99"})
    assert (other.status_code, other.json()) == (400, {"error": "Watcher 99 not found."})


# ======================================================== user & devices


def test_local_init_needs_the_client_header_and_mints_a_new_pat_each_call(
    server: DevServer,
) -> None:
    with httpx.Client(base_url=server.url) as http:
        refused = http.post("/api/local-init")
        first = http.post("/api/local-init", headers={"X-Lobu-Client": "device-agent"}).json()
        second = http.post("/api/local-init", headers={"X-Lobu-Client": "device-agent"}).json()
    assert (refused.status_code, refused.json()) == (403, {"error": "missing_client_header"})
    assert first["device_token"] != second["device_token"]
    assert first["device_token"].startswith("owl_pat_")
    assert len(first["device_token"]) == len("owl_pat_") + 32
    assert (
        first["device_token_scope"] == "device_worker:run mcp:read mcp:write mcp:admin profile:read"
    )
    assert first["organization"]["slug"] == "dev"
    assert set(first) == {
        "session_token",
        "cookie_name",
        "device_token",
        "device_token_scope",
        "user",
        "organization",
    }
    with client_for(server, first["device_token"]) as http:
        assert poll(http).status_code == 200


def test_devices_list_shows_online_and_org_slug(
    state: DevState, client: httpx.Client, clock: FakeClock
) -> None:
    poll(client)
    (device,) = client.get("/api/me/devices").json()["devices"]
    assert device["worker_id"] == WID
    assert (device["platform"], device["label"], device["app_version"]) == ("linux", "box", "0.1.0")
    assert (device["online"], device["organization_slug"]) == (True, "dev")
    clock.advance(21 * 60)
    assert client.get("/api/me/devices").json()["devices"][0]["online"] is False


def test_mint_child_token_binds_a_new_pat_to_the_worker(
    state: DevState, client: httpx.Client, server: DevServer
) -> None:
    wid = add_watcher(state)
    minted = client.post(
        "/api/me/devices/mint-child-token", json={"platform": "headless", "worker_id": WID}
    ).json()
    assert minted["worker_id"] == WID
    with client_for(server, minted["access_token"]) as bound:
        assert poll(bound, worker_id="linux:else").json()["error"] == "worker_id_mismatch"
        assert bound.post(f"/api/workers/me/watchers/{wid}/trigger").status_code == 200


def test_unknown_routes(client: httpx.Client) -> None:
    for path in ("/api/workers/me/automations/1/trigger", "/api/workers/fetch-events"):
        answer = client.post(path)
        assert answer.status_code == 403
        assert answer.json() == {"error": "Endpoint not available to user-scoped workers"}
    assert client.get("/api/nothing-here").status_code == 404


def test_get_of_the_poll_route_answers_the_api_index(client: httpx.Client) -> None:
    answer = client.get("/api/workers/poll")
    assert answer.status_code == 200
    assert set(answer.json()) == {"status", "mcp_endpoint", "health", "openapi"}
    assert answer.json()["status"] == "ok"


# =============================================================== reaper


def test_reaper_times_out_a_run_whose_heartbeats_stopped(
    state: DevState, client: httpx.Client, clock: FakeClock
) -> None:
    run_id = queue_and_claim(state, client)
    assert heartbeat(client, run_id).status_code == 200
    clock.advance(180)
    assert heartbeat(client, run_id).status_code == 200  # exactly at the limit: still alive
    clock.advance(181)

    answer = heartbeat(client, run_id)  # any request reaps lazily first

    assert (answer.status_code, answer.json()) == (409, {"error": "Run is not in progress"})
    run = state.run(run_id)
    assert (run.status, run.error) == ("timeout", SILENT_HEARTBEAT_ERROR)
    assert complete(client, run_id).status_code == 409


def test_reaper_gives_unheartbeated_runs_the_long_timeout(
    clock: FakeClock,
) -> None:
    state = DevState(
        create_checkin_watcher=False, heartbeat_timeout=3, unheartbeated_timeout=60, clock=clock
    )
    run_id = state.queue_run(add_watcher(state))
    with DevServer(state).running_in_thread() as live, client_for(live, state.add_token()) as http:
        poll(http)
        clock.advance(30)
        poll(http)
        assert state.run(run_id).status == "running"
        clock.advance(31)
        poll(http)
    assert (state.run(run_id).status, state.run(run_id).error) == ("timeout", NEVER_HEARTBEAT_ERROR)


def test_background_reaper_runs_without_requests(clock: FakeClock) -> None:
    state = DevState(create_checkin_watcher=False, heartbeat_timeout=1, clock=clock)
    run_id = state.queue_run(add_watcher(state))
    server = DevServer(state, reap_interval=0.02)
    with server.running_in_thread() as live, client_for(live, state.add_token()) as http:
        poll(http)
        heartbeat(http, run_id)
        clock.advance(2)
        wait_for(lambda: state.run(run_id).status == "timeout", what="the run to be reaped")


# =============================================================== faults


def test_status_fault_answers_without_processing(state: DevState, client: httpx.Client) -> None:
    run_id = state.queue_run(add_watcher(state))
    state.faults.add(Fault(route="poll", kind="status", status=503, retry_after=2.0, times=1))

    failed = poll(client)

    assert failed.status_code == 503
    assert failed.headers["Retry-After"] == "2"
    assert "error" in failed.json()
    assert state.run(run_id).status == "pending"
    assert poll(client).json()["run_id"] == run_id
    assert state.faults.injected["status"] == 1


def test_drop_fault_closes_without_processing(state: DevState, client: httpx.Client) -> None:
    run_id = state.queue_run(add_watcher(state))
    state.faults.add(Fault(route="poll", kind="drop"))

    with pytest.raises(httpx.TransportError):
        poll(client)

    assert state.run(run_id).status == "pending"
    assert state.requests[-1] == ("POST", "/api/workers/poll", 0)


def test_drop_after_commit_loses_the_ack_of_a_stored_completion(
    state: DevState, client: httpx.Client
) -> None:
    run_id = queue_and_claim(state, client)
    state.faults.add(Fault(route="complete", kind="drop_after_commit"))

    with pytest.raises(httpx.TransportError):
        complete(client, run_id)

    assert state.run(run_id).status == "completed"
    assert complete(client, run_id).status_code == 409
    run = state.run(run_id)
    assert (run.completion_attempts, run.completions_committed) == (2, 1)


def test_delay_fault_slows_the_answer_down(state: DevState, client: httpx.Client) -> None:
    state.faults.add(Fault(route="heartbeat", kind="delay", seconds=0.2))
    run_id = queue_and_claim(state, client)
    started = time.monotonic()
    assert heartbeat(client, run_id).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_garbage_fault_answers_200_with_html(state: DevState, client: httpx.Client) -> None:
    run_id = state.queue_run(add_watcher(state))
    state.faults.add(Fault(route="*", kind="garbage", times=2))
    for _ in range(2):
        answer = poll(client)
        assert answer.status_code == 200
        assert answer.text == "<html>oops</html>"
        with pytest.raises(ValueError, match="Expecting value"):
            answer.json()
    assert state.run(run_id).status == "pending"
    assert poll(client).json()["run_id"] == run_id


def test_chaos_mode_and_clear(state: DevState, client: httpx.Client) -> None:
    state.faults.chaos(rate=1.0, kinds=("status",), routes=("poll",), seed=7)
    for _ in range(10):
        answer = poll(client)
        assert answer.status_code in {500, 502, 503, 429}
        if answer.status_code in {429, 503}:
            assert 0.2 <= float(answer.headers["Retry-After"]) <= 1.0
    assert state.faults.injected["status"] == 10
    state.faults.clear()
    assert poll(client).status_code == 200


def test_chaos_is_random_but_seeded(state: DevState, client: httpx.Client) -> None:
    state.faults.chaos(rate=0.5, kinds=("status", "garbage"), routes=("poll",), seed=3)
    statuses = [poll(client).status_code for _ in range(20)]
    assert 200 in statuses
    injected = sum(state.faults.injected.values())
    assert 0 < injected < 20


def test_faults_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault(kind="explode")
    with pytest.raises(ValueError, match="unknown fault route"):
        Fault(route="everything")


# ============================================================ the server


def test_server_refuses_non_loopback_hosts() -> None:
    with pytest.raises(ValueError, match="loopback"):
        DevServer(DevState(), host="192.168.1.10")


def test_async_context_manager_serves_and_stops(state: DevState) -> None:
    token = state.add_token()

    async def scenario() -> tuple[int, str]:
        async with DevServer(state) as server:
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
                answer = await http.post("/api/workers/poll", json={"worker_id": WID})
            return answer.status_code, server.url

    status, url = asyncio.run(scenario())
    assert status == 200
    assert url.startswith("http://127.0.0.1:")
    with pytest.raises(httpx.ConnectError), httpx.Client() as http:
        http.get(url + "/_dev/state")


def test_admin_routes_and_request_log(state: DevState, server: DevServer) -> None:
    with httpx.Client(base_url=server.url) as http:
        made = http.post("/_dev/watchers", json={"prompt": "Hi", "pinned_worker_id": WID}).json()
        queued = http.post(f"/_dev/watchers/{made['watcher_id']}/runs", json={}).json()
        snapshot = http.get("/_dev/state").json()
        assert http.post("/_dev/watchers/999/runs").status_code == 404
        assert http.post("/_dev/watchers", json={"bogus": 1}).status_code == 400
    assert [r["id"] for r in snapshot["runs"]] == [queued["run_id"]]
    assert snapshot["watchers"][0]["prompt"] == "Hi"
    assert snapshot["devices"][0]["worker_id"] == WID
    assert state.requests[:2] == [
        ("POST", "/_dev/watchers", 200),
        ("POST", f"/_dev/watchers/{made['watcher_id']}/runs", 200),
    ]


def test_serve_forever_prints_url_and_token(capsys: pytest.CaptureFixture[str]) -> None:
    state = DevState(create_checkin_watcher=False)

    async def scenario() -> str:
        task = asyncio.create_task(
            serve_forever("127.0.0.1", 0, seed_demo=True, worker_id=WID, state=state)
        )
        printed = ""
        deadline = time.monotonic() + 3
        while "device-agent run" not in printed and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            printed += capsys.readouterr().out
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return printed

    printed = asyncio.run(scenario())
    token = printed.split("token: ", 1)[1].split()[0]
    assert token.startswith("owl_pat_")
    assert state.token(token) is not None
    environment = f"DEVICE_AGENT_TOKEN={token} DEVICE_AGENT_WORKER_ID={WID}"
    assert f"{environment} device-agent run --agent demo" in printed
    assert f"{environment}\n" in printed.split("export ", 1)[1]  # for the other commands
    assert "DEVICE_AGENT_SERVER=http://127.0.0.1:" in printed
    assert len(state.watchers()) == 2
    assert [r.status for r in state.runs()] == ["pending"]


def test_connection_close_is_honoured(state: DevState, server: DevServer, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
    with httpx.Client(base_url=server.url, headers=headers) as http:
        first = poll(http)
        second = poll(http)
    assert first.headers["Connection"] == "close"
    assert second.status_code == 200


def test_manual_windows_of_a_daily_watcher_are_yesterday_then_today(
    state: DevState, client: httpx.Client
) -> None:
    wid = add_watcher(state, schedule="0 9 * * *")
    first = state.queue_run(wid, dispatch_source="manual")
    assert (state.run(first).window_start, state.run(first).window_end) == (
        "2025-06-14T00:00:00.000Z",
        "2025-06-15T00:00:00.000Z",
    )
    poll(client)
    assert complete(client, first).status_code == 200
    second = state.queue_run(wid, dispatch_source="manual")
    assert (state.run(second).window_start, state.run(second).window_end) == (
        "2025-06-15T00:00:00.000Z",
        "2025-06-16T00:00:00.000Z",
    )


def test_manual_run_then_the_scheduled_one_hits_the_duplicate_window(
    state: DevState, client: httpx.Client
) -> None:
    wid = add_watcher(state, schedule="0 9 * * *")
    for _ in range(2):  # yesterday, then today
        run_id = state.queue_run(wid, dispatch_source="manual")
        poll(client)
        assert complete(client, run_id).status_code == 200
    scheduled = state.queue_run(wid)  # today again
    poll(client)
    answer = complete(client, scheduled)
    assert answer.status_code == 500
    assert "insight_windows_insight_id_granularity_window_start_key" in answer.json()["error"]
    assert state.run(scheduled).status == "running"


def test_run_now_on_an_unscheduled_watcher_repeats_the_current_week(
    state: DevState, client: httpx.Client
) -> None:
    wid = add_watcher(state)
    body = {"action": "trigger", "watcher_id": wid}
    starts = []
    for _ in range(3):
        run_id = client.post("/api/dev/manage_watchers", json=body).json()["run_id"]
        poll(client)
        starts.append(state.run(run_id).window_start)
        last = complete(client, run_id)
    # the last full week, then the week starting today (in the future), then that week again
    assert starts == [
        "2025-06-08T00:00:00.000Z",
        "2025-06-15T00:00:00.000Z",
        "2025-06-15T00:00:00.000Z",
    ]
    assert last.status_code == 500


def test_raw_runs_without_a_window_never_collide(state: DevState, client: httpx.Client) -> None:
    payload = {"watcher": {"id": "1"}, "event": {"payload": {}}}
    for _ in range(2):
        run_id = state.queue_raw_run(WID, payload=payload)
        poll(client)
        assert complete(client, run_id).json() == {"ok": True, "status": "completed"}


def test_a_handler_bug_answers_500_instead_of_hanging_up(
    state: DevState, client: httpx.Client
) -> None:
    state.queue_raw_run(WID, payload={"not json": object()})
    answer = poll(client)
    assert answer.status_code == 500
    assert "dev server error" in answer.json()["error"]
