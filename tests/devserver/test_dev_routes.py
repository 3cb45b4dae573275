"""`/_dev`: everything a test or a user experimenting needs, without reaching into state."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from device_agent.devserver import DevServer, DevState
from tests.support.clock import FakeClock
from tests.support.devserver import WID, client_for, poll


@pytest.fixture
def admin(server: DevServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5.0) as http:
        yield http


def test_tokens_with_scopes_binding_and_expiry(
    admin: httpx.Client, server: DevServer, clock: FakeClock
) -> None:
    bound = admin.post("/_dev/tokens", json={"bound_worker_id": WID, "expires_in": 60}).json()
    weak = admin.post("/_dev/tokens", json={"scopes": "profile:read"}).json()
    with client_for(server, bound["token"]) as device:
        assert poll(device, worker_id="linux:other").json()["error"] == "worker_id_mismatch"
        assert poll(device).status_code == 200
        clock.advance(61)
        assert poll(device).status_code == 401
    with client_for(server, weak["token"]) as user:
        assert poll(user).json() == {"error": "Worker token missing device_worker:run scope"}


def test_watcher_runs_with_a_chosen_window(admin: httpx.Client, state: DevState) -> None:
    made = admin.post("/_dev/watchers", json={"prompt": "Hi", "pinned_worker_id": WID}).json()
    window = {"window_start": "2025-01-01T00:00:00.000Z", "window_end": "2025-01-02T00:00:00.000Z"}
    run_id = admin.post(f"/_dev/watchers/{made['watcher_id']}/runs", json=window).json()["run_id"]
    shown = admin.get(f"/_dev/runs/{run_id}").json()
    assert (shown["status"], shown["window_start"], shown["window_end"]) == (
        "pending",
        *window.values(),
    )


def test_automations_runs_and_their_state(admin: httpx.Client) -> None:
    made = admin.post(
        "/_dev/automations",
        json={"prompt": "Hi", "pinned_worker_id": WID, "max_attempts": 3, "agent_kind": "codex"},
    ).json()
    run = admin.post(f"/_dev/automations/{made['automation_id']}/runs", json={"event_turn": True})
    shown = admin.get(f"/_dev/runs/{run.json()['run_id']}").json()
    assert shown["run_type"] == "automation"
    assert (shown["finalize_attempts"], shown["windows_completed"]) == (0, [])
    assert (
        admin.post("/_dev/automations", json={"prompt": "x", "max_attempts": 9}).status_code == 400
    )
    assert admin.post("/_dev/automations/99/runs").status_code == 404


def test_faults_can_be_armed_and_cleared(admin: httpx.Client, client: httpx.Client) -> None:
    armed = admin.post("/_dev/faults", json={"route": "poll", "status": 503, "times": 2})
    assert armed.json()["armed"]["status"] == 503
    assert poll(client).status_code == 503
    assert admin.delete("/_dev/faults").status_code == 200
    assert poll(client).status_code == 200
    delay = admin.post("/_dev/faults", json={"route": "poll", "kind": "delay", "seconds": 0.01})
    assert delay.status_code == 200
    assert poll(client).status_code == 200  # a delayed poll is still answered
    assert admin.post("/_dev/faults", json={"kind": "meteor"}).status_code == 400


def test_settings_and_unknown_routes(admin: httpx.Client, state: DevState) -> None:
    changed = admin.post(
        "/_dev/settings", json={"next_poll_seconds": 2, "min_app_version": "1.0.0"}
    )
    assert changed.json() == {"next_poll_seconds": 2, "min_app_version": "1.0.0"}
    assert state.next_poll_seconds == 2
    assert admin.post("/_dev/settings", json={"lane": "automation"}).status_code == 400
    assert admin.get("/_dev/nothing").status_code == 404
    assert admin.post("/_dev/oauth/approve", json={"user_code": "NOPE-NOPE"}).status_code == 404
