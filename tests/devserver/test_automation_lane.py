"""The automation lane (`DevState(lane="automation")`): claim gate, long-poll, the
exit report's answer table, the MCP stand-in and Run now."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from device_agent.devserver import DevServer, DevState
from device_agent.devserver.routes_automation import MISSING_COMPLETE_WINDOW_NUDGE
from tests.support.clock import FakeClock
from tests.support.devserver import client_for
from tests.support.waiting import wait_for

WORKER = "headless:box"
GATE = {
    "capabilities": {"automations.execute": True},
    "backend_capacity": {"compiled_connector": 0},
}


@pytest.fixture
def state(clock: FakeClock) -> DevState:
    return DevState(create_checkin_watcher=False, clock=clock, lane="automation")


def poll(http: httpx.Client, **extra: Any) -> httpx.Response:
    body = {"worker_id": WORKER, "platform": "headless", "app_version": "0.3.0", **GATE} | extra
    return http.post("/api/workers/poll", json=body)


def report(http: httpx.Client, run_id: int, **body: Any) -> dict[str, Any]:
    exit_report = {
        "worker_id": WORKER,
        "output": "done",
        "error": None,
        "duration_ms": 10,
        "exit_code": 0,
        "exit_signal": None,
        "exit_reason": "ok",
        "finalize_attempt": 0,
    } | body
    answer = http.post(f"/api/workers/me/runs/{run_id}/complete-automation", json=exit_report)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def add_automation(state: DevState, **kw: Any) -> str:
    return state.add_automation("Summarise", name="Digest", pinned_worker_id=WORKER, **kw)


def claimed(state: DevState, http: httpx.Client, **queue: Any) -> dict[str, Any]:
    automation = queue.pop("automation", None) or add_automation(state)
    run_id = state.queue_automation_run(automation, **queue)
    answer: dict[str, Any] = poll(http).json()
    assert answer["run_id"] == run_id, answer
    return answer


def held_polls(state: DevState) -> int:
    device = state.device(WORKER)
    return device.polls if device is not None else 0


def complete_window(
    server: DevServer, token: str, run_id: int, data: Any = None, slug: str = "dev"
) -> dict[str, Any]:
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "run_sdk",
            "arguments": {
                "method": "automations.completeWindow",
                "params": {"run_id": run_id, "extracted_data": data or {"summary": "ok"}},
            },
        },
    }
    with client_for(server, token) as agent:
        answer = agent.post(f"/mcp/{slug}", json=call)
    assert answer.status_code == 200
    result: dict[str, Any] = answer.json()["result"]
    return result


# ============================================================ claim gate


def test_claim_carries_the_automation_and_a_per_run_agent_session(
    state: DevState, client: httpx.Client, server: DevServer
) -> None:
    automation = add_automation(state, extraction_schema={"type": "object"})
    run = claimed(state, client, automation=automation)
    assert run["run_type"] == "automation"
    payload = run["payload"]
    assert payload["automation"] == {
        "id": automation,
        "name": "Digest",
        "slug": "digest",
        "agent_kind": "claude-code",
        "execution_config": None,
        "prompt": "Summarise",
        "extraction_schema": {"type": "object"},
    }
    approved = payload["event"]["payload"]
    assert approved["dispatch_source"] == "scheduled"
    assert approved["finalize_nudge_count"] == 0
    session = payload["context"]["agent_session"]
    assert session["mcp_url"] == f"{server.url}/mcp/dev"
    assert session["token"].startswith("owl_ses_")
    assert session["expires_at"] == "2025-06-15T14:30:00.000Z"  # about 2 h


def test_no_agent_session_without_an_assigned_agent(state: DevState, client: httpx.Client) -> None:
    run = claimed(state, client, automation=add_automation(state, agent_id=None))
    assert "agent_session" not in run["payload"]["context"]


@pytest.mark.parametrize(
    ("platform", "capabilities", "claims"),
    [
        ("headless", {"automations.execute": True}, True),
        ("macos", {}, True),
        ("headless", {}, False),
        ("linux", {"automations.execute": True}, False),  # no such platform: no capability
    ],
)
def test_only_a_mac_or_a_capable_device_is_handed_automation_runs(
    state: DevState,
    client: httpx.Client,
    platform: str,
    capabilities: dict[str, bool],
    claims: bool,
) -> None:
    automation = state.add_automation("Hi", pinned_worker_id="dev:1")
    state.queue_automation_run(automation)
    body = {"worker_id": "dev:1", "platform": platform, "capabilities": capabilities}
    answer = client.post("/api/workers/poll", json=body).json()
    assert ("run_id" in answer) is claims


def test_agent_kinds_and_capacity_filter_claims(state: DevState, client: httpx.Client) -> None:
    codex = add_automation(state, agent_kind="codex")
    run_id = state.queue_automation_run(codex)
    assert poll(client, agent_kinds=[]).json() == {"next_poll_seconds": 10}
    assert poll(client, agent_kinds=["claude-code"]).json() == {"next_poll_seconds": 10}
    assert poll(client, capacity_available=0).json() == {"next_poll_seconds": 10}
    assert poll(client, agent_kinds=["codex"]).json()["run_id"] == run_id


def test_one_active_run_per_automation(state: DevState, client: httpx.Client) -> None:
    automation = add_automation(state)
    first = claimed(state, client, automation=automation)["run_id"]
    state.queue_automation_run(automation)
    assert "run_id" not in poll(client).json()
    report(client, first, error="boom")
    assert "run_id" in poll(client).json()


def test_platform_mismatch_and_the_version_floor(state: DevState, client: httpx.Client) -> None:
    poll(client)
    other = poll(client, platform="macos")
    assert (other.status_code, other.json()["error"]) == (403, "platform_mismatch")
    state.min_app_version = "0.4.0"
    old = poll(client)
    assert old.status_code == 409
    assert old.json() == {
        "error": "upgrade_required",
        "error_description": "Update the headless worker to continue"
        " (this server requires a newer version)",
    }
    assert poll(client, app_version="0.4.0").status_code == 200


def test_watcher_routes_are_refused_in_this_lane(client: httpx.Client) -> None:
    for path in ("/api/workers/me/runs/1/complete-watcher", "/api/workers/me/watchers/1/trigger"):
        answer = client.post(path, json={})
        assert (answer.status_code, answer.json()) == (
            403,
            {"error": "Endpoint not available to user-scoped workers"},
        )


# ============================================================ long-poll


def test_a_long_poll_answers_as_soon_as_a_run_is_queued(
    state: DevState, client: httpx.Client
) -> None:
    automation = add_automation(state)
    answers: list[dict[str, Any]] = []
    holder = threading.Thread(target=lambda: answers.append(poll(client, wait_seconds=20).json()))
    holder.start()
    wait_for(lambda: held_polls(state) >= 1, what="the poll to be held, having found nothing")
    run_id = state.queue_automation_run(automation)
    holder.join(timeout=15)
    assert answers == [answers[0]]
    assert answers[0]["run_id"] == run_id


def test_released_polls_are_answered_at_once_and_none_is_held_after(
    state: DevState, client: httpx.Client
) -> None:
    """What the demo does before stopping its agent: the poll in flight answers now, so the
    agent's stop does not wait out the hold."""
    answers: list[dict[str, Any]] = []
    holder = threading.Thread(target=lambda: answers.append(poll(client, wait_seconds=20).json()))
    holder.start()
    wait_for(lambda: held_polls(state) >= 1, what="the poll to be held, having found nothing")
    state.release_held_polls()
    holder.join(timeout=5)
    assert not holder.is_alive()
    later = threading.Thread(target=lambda: answers.append(poll(client, wait_seconds=20).json()))
    later.start()
    later.join(timeout=5)
    assert not later.is_alive()  # not held either
    assert len(answers) == 2
    assert all("run_id" not in answer for answer in answers)  # idle answers, at once


def test_a_long_poll_with_nothing_queued_says_poll_again_at_once(
    state: DevState, client: httpx.Client
) -> None:
    assert poll(client, wait_seconds=0.2).json() == {"next_poll_seconds": 0}


def test_the_watcher_lane_ignores_wait_seconds(clock: FakeClock) -> None:
    state = DevState(create_checkin_watcher=False, clock=clock)  # Lobu 1.6.0
    with (
        DevServer(state).running_in_thread() as server,
        client_for(server, state.add_token()) as http,
    ):
        body = {"worker_id": "w", "platform": "linux", "wait_seconds": 20}
        assert http.post("/api/workers/poll", json=body).json() == {"next_poll_seconds": 10}


# ============================================================ exit report


def test_a_window_completed_over_mcp_completes_the_run(
    state: DevState, client: httpx.Client, server: DevServer
) -> None:
    run = claimed(state, client)
    run_id, session = run["run_id"], run["payload"]["context"]["agent_session"]
    result = complete_window(server, session["token"], run_id, {"summary": "3 files"})
    assert result["isError"] is False
    assert state.run(run_id).windows_completed == [{"summary": "3 files"}]
    heartbeat = client.post("/api/workers/heartbeat", json={"run_id": run_id, "worker_id": WORKER})
    assert heartbeat.status_code == 409  # completed: the CLI is told to stop
    assert report(client, run_id) == {"ok": True, "status": "completed", "run_id": run_id}
    assert report(client, run_id) == {
        "ok": True,
        "status": "completed",
        "run_id": run_id,
        "idempotent": True,
    }


def test_the_mcp_stand_in_records_each_request_with_its_bearer_token(
    state: DevState, client: httpx.Client, server: DevServer
) -> None:
    run = claimed(state, client)
    run_id, session = run["run_id"], run["payload"]["context"]["agent_session"]
    complete_window(server, session["token"], run_id)
    (call,) = state.mcp_calls
    assert (call.method, call.tool, call.token) == ("tools/call", "run_sdk", session["token"])
    assert call.arguments["params"]["run_id"] == run_id


def test_a_session_token_completes_only_its_own_run_and_cannot_poll(
    state: DevState, client: httpx.Client, server: DevServer
) -> None:
    first = claimed(state, client)
    second = claimed(state, client)
    token = first["payload"]["context"]["agent_session"]["token"]
    refused = complete_window(server, token, second["run_id"])
    assert refused["isError"] is True
    assert "belongs to run" in refused["content"][0]["text"]
    with client_for(server, token) as agent:
        assert poll(agent).status_code == 403


def test_a_clean_exit_without_the_window_resumes_then_fails(
    state: DevState, client: httpx.Client
) -> None:
    run_id = claimed(state, client, automation=add_automation(state, max_attempts=2))["run_id"]
    resume = {
        "ok": True,
        "status": "resume",
        "reason_code": "missing_complete_window",
        "max_attempts": 2,
        "nudge": MISSING_COMPLETE_WINDOW_NUDGE,
        "error": MISSING_COMPLETE_WINDOW_NUDGE,
    }
    assert report(client, run_id, finalize_attempt=0) == resume | {"attempt": 1}
    assert state.run(run_id).status == "running"  # still claimed
    # The device never saw that answer and sends the same report again.
    assert report(client, run_id, finalize_attempt=0) == resume | {"attempt": 1, "idempotent": True}
    assert report(client, run_id, finalize_attempt=1) == resume | {"attempt": 2}
    failed = report(client, run_id, finalize_attempt=2)
    assert failed["status"] == "failed"
    assert failed["reason_code"] == "missing_complete_window"
    assert failed["error"].startswith(
        "Device CLI exited without calling completeWindow after 3 attempt(s)."
    )
    assert (failed["attempt"], failed["max_attempts"]) == (2, 2)
    assert report(client, run_id, finalize_attempt=2) == {
        "ok": True,
        "status": "failed",
        "idempotent": True,
    }


def test_failed_cancelled_and_event_turn_reports(state: DevState, client: httpx.Client) -> None:
    failed = claimed(state, client)["run_id"]
    assert report(client, failed, error="claude exited with status 1", exit_code=1) == {
        "ok": True,
        "status": "failed",
    }
    cancelled = claimed(state, client)["run_id"]
    assert report(client, cancelled, exit_reason="cancelled", exit_signal="SIGTERM") == {
        "ok": True,
        "status": "cancelled",
        "reason_code": "device_daemon_shutdown",
        "run_id": cancelled,
    }
    turn = claimed(state, client, event_turn=True)
    assert turn["payload"]["event"]["payload"]["trigger_execution"] == "turn"
    assert report(client, turn["run_id"]) == {
        "ok": True,
        "status": "completed",
        "reason_code": "event_turn",
        "run_id": turn["run_id"],
    }


def test_the_server_strips_nul_and_keeps_the_last_2000_characters(
    state: DevState, client: httpx.Client
) -> None:
    run_id = claimed(state, client)["run_id"]
    report(client, run_id, output="a\x00" * 3000, error="bad\x00news")
    run = state.run(run_id)
    assert run.error == "badnews"
    assert run.output == "a" * 2000


def test_exit_report_errors(state: DevState, client: httpx.Client, server: DevServer) -> None:
    watcher_run = state.queue_raw_run(WORKER, run_type="watcher", payload={})
    poll(client)
    url = "/api/workers/me/runs/{}/complete-automation"
    wrong_type = client.post(url.format(watcher_run), json={"worker_id": WORKER})
    assert (wrong_type.status_code, wrong_type.json()) == (409, {"error": "Not an Automation run"})
    assert client.post(url.format(99999), json={"worker_id": WORKER}).status_code == 404
    assert client.post(url.format(0), json={"worker_id": WORKER}).json() == {
        "error": "Invalid runId"
    }
    run_id = claimed(state, client)["run_id"]
    with client_for(server, state.add_token(bound_worker_id="headless:other")) as other:
        answer = other.post(url.format(run_id), json={"worker_id": WORKER})
        assert answer.status_code == 403


# ================================================================ cancel


def test_a_cancelled_run_gets_409_on_heartbeat(
    state: DevState, client: httpx.Client, server: DevServer
) -> None:
    run_id = claimed(state, client)["run_id"]
    beat = {"run_id": run_id, "worker_id": WORKER}
    assert client.post("/api/workers/heartbeat", json=beat).json() == {"continue": True}
    with httpx.Client(base_url=server.url) as admin:
        assert admin.post(f"/_dev/runs/{run_id}/cancel").json()["status"] == "cancelled"
    assert client.post("/api/workers/heartbeat", json=beat).json() == {
        "error": "Run is not in progress"
    }
    assert report(client, run_id) == {"ok": True, "status": "cancelled", "idempotent": True}


# ================================================================ run now


def test_run_now_needs_a_bound_token_and_is_idempotent(
    state: DevState, client: httpx.Client, server: DevServer
) -> None:
    automation = add_automation(state)
    paused = add_automation(state, active=False)
    elsewhere = state.add_automation("x", pinned_worker_id="headless:other")
    url = "/api/workers/me/automations/{}/trigger"
    assert client.post(url.format(automation)).json() == {
        "error": "Token is not bound to a device worker"
    }
    with client_for(server, state.add_token(bound_worker_id="headless:new")) as unpolled:
        assert unpolled.post(url.format(automation)).json() == {
            "error": "Device not registered yet — poll first"
        }
    with client_for(server, state.add_token(bound_worker_id=WORKER)) as bound:
        first = bound.post(url.format(automation)).json()
        again = bound.post(url.format(automation)).json()
        assert (first["status"], first["already_queued"]) == ("pending", False)
        assert (again["run_id"], again["already_queued"]) == (first["run_id"], True)
        assert bound.post(url.format(999)).json() == {"error": "Automation not found"}
        assert bound.post(url.format(elsewhere)).json() == {
            "error": "Automation is not pinned to this device"
        }
        assert bound.post(url.format(paused)).json() == {"error": "Automation is not active"}


# ===================================================== other run types


@pytest.fixture
def raw_runs(state: DevState) -> dict[str, int]:
    return {
        kind: state.queue_raw_run(WORKER, run_type=kind, payload={})
        for kind in ("chat_message", "action", "sync")
    }


def test_runs_of_other_types_are_failed_through_their_own_routes(
    state: DevState, client: httpx.Client, raw_runs: dict[str, int]
) -> None:
    for _ in raw_runs:
        poll(client)
    chat = client.post(
        f"/api/workers/me/runs/{raw_runs['chat_message']}/complete-chat",
        json={"worker_id": WORKER, "error": "not handled here"},
    )
    assert chat.json() == {"ok": True, "status": "failed"}
    action = client.post(
        "/api/workers/complete-action",
        json={"run_id": raw_runs["action"], "worker_id": WORKER, "status": "failed"},
    )
    generic = client.post(
        "/api/workers/complete",
        json={"run_id": raw_runs["sync"], "worker_id": WORKER, "status": "failed"},
    )
    assert action.json() == generic.json() == {"success": True}
    assert {state.run(r).status for r in raw_runs.values()} == {"failed"}


def test_a_raw_automation_run_reports_like_a_real_one_once_it_names_its_automation(
    state: DevState, client: httpx.Client
) -> None:
    automation = int(add_automation(state))
    named = state.queue_raw_run(WORKER, "automation", {"automation": 7}, automation_id=automation)
    orphan = state.queue_raw_run(WORKER, "automation", {"automation": None})
    assert poll(client).json()["payload"] == {"automation": 7}  # verbatim
    assert report(client, named, error="bad payload") == {"ok": True, "status": "failed"}
    poll(client)
    answer = client.post(
        f"/api/workers/me/runs/{orphan}/complete-automation", json={"worker_id": WORKER}
    )
    assert (answer.status_code, answer.json()) == (
        500,
        {"error": "Automation run missing automation_id"},
    )
