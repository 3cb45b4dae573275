"""`POST /lobu/worker/transcript/snapshot` on the dev server: the answers of the upstream
route, what it keeps, and where `/_dev` shows it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from device_agent.devserver import DevServer, DevState
from device_agent.devserver.routes_transcript import MAX_SNAPSHOT_BYTES, TRANSCRIPT_ROUTE
from tests.support.clock import FakeClock

WORKER = "headless:box"
HEADER = (
    '{"type":"session","version":3,"id":"s","timestamp":"2026-12-08T01:25:00.000Z","cwd":"/w"}\n'
)
ONE = HEADER + '{"type":"message","id":"acp-1","parentId":null,"message":{"role":"user"}}\n'
TWO = ONE + '{"type":"message","id":"acp-2","parentId":"acp-1","message":{"role":"assistant"}}\n'


@pytest.fixture
def state(clock: FakeClock) -> DevState:
    return DevState(create_checkin_watcher=False, clock=clock, lane="automation")


@pytest.fixture
def session(state: DevState) -> tuple[int, str]:
    """A claimed automation run and its agent_session token."""
    device_token = state.add_token()
    automation = state.add_automation("Summarise", name="Digest", pinned_worker_id=WORKER)
    run_id = state.queue_automation_run(automation)
    with DevServer(state).running_in_thread() as server:
        body = {
            "worker_id": WORKER,
            "platform": "headless",
            "capabilities": {"automations.execute": True},
            "backend_capacity": {"compiled_connector": 0},
        }
        headers = {"Authorization": f"Bearer {device_token}"}
        claim = httpx.post(f"{server.url}/api/workers/poll", json=body, headers=headers).json()
    assert claim["run_id"] == run_id
    return run_id, claim["payload"]["context"]["agent_session"]["token"]


def upload(server: DevServer, token: str | None, body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(f"{server.url}{TRANSCRIPT_ROUTE}", json=body, headers=headers)


def snapshot(run_id: int, jsonl: str = ONE, status: str = "completed") -> dict[str, Any]:
    return {"runId": run_id, "terminalStatus": status, "snapshotJsonl": jsonl}


def test_a_snapshot_is_kept_and_extended_byte_for_byte(
    state: DevState, session: tuple[int, str]
) -> None:
    run_id, token = session
    with DevServer(state).running_in_thread() as server:
        first = upload(server, token, snapshot(run_id, ONE, "failed"))
        assert first.status_code == 200
        assert first.json() == {"id": 1}
        again = upload(server, token, snapshot(run_id, TWO))
        assert (again.status_code, again.json()) == (200, {"id": 1})
        shown = httpx.get(f"{server.url}/_dev/runs/{run_id}").json()["transcript"]
        everything = httpx.get(f"{server.url}/_dev/state").json()["transcripts"]
    record = state.transcript(run_id)
    assert record is not None
    assert (record.snapshot_jsonl, record.terminal_status, record.uploads) == (TWO, "completed", 2)
    assert record.byte_size == len(TWO.encode())
    assert shown["entries"] == 2
    assert shown["snapshot_jsonl"] == TWO
    assert [t["run_id"] for t in everything] == [run_id]


def test_a_snapshot_that_does_not_extend_the_stored_one_gets_409(
    state: DevState, session: tuple[int, str]
) -> None:
    run_id, token = session
    state.store_transcript(run_id, "completed", TWO)
    with DevServer(state).running_in_thread() as server:
        diverging = ONE + '{"type":"message","id":"acp-2","parentId":"acp-1","x":1}\n'
        answer = upload(server, token, snapshot(run_id, diverging))
    assert answer.status_code == 409
    stored = state.transcript(run_id)
    assert stored is not None
    assert stored.snapshot_jsonl == TWO


def test_only_the_runs_own_session_token_is_taken(
    state: DevState, session: tuple[int, str]
) -> None:
    run_id, _ = session
    device_token = state.add_token()
    with DevServer(state).running_in_thread() as server:
        assert upload(server, None, snapshot(run_id)).json() == {"error": "Invalid token"}
        assert upload(server, None, snapshot(run_id)).status_code == 401
        assert upload(server, "owl_ses_nobody", snapshot(run_id)).status_code == 401
        refused = upload(server, device_token, snapshot(run_id))
    assert (refused.status_code, refused.json()) == (400, {"error": "Token missing required scope"})
    assert state.transcript(run_id) is None


@pytest.mark.parametrize(
    ("change", "status", "said"),
    [
        ({"terminalStatus": "done"}, 400, "Invalid terminalStatus"),
        ({"snapshotJsonl": None}, 400, "Missing snapshotJsonl"),
        ({"snapshotJsonl": ""}, 400, "Missing snapshotJsonl"),
        ({"snapshotJsonl": "x" * (MAX_SNAPSHOT_BYTES + 1)}, 413, None),
        ({"runId": 999}, 403, None),
    ],
)
def test_a_bad_body_is_refused(
    state: DevState,
    session: tuple[int, str],
    change: dict[str, Any],
    status: int,
    said: str | None,
) -> None:
    run_id, token = session
    with DevServer(state).running_in_thread() as server:
        answer = upload(server, token, snapshot(run_id) | change)
        not_json = httpx.post(
            f"{server.url}{TRANSCRIPT_ROUTE}",
            content=b"{not json",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert answer.status_code == status
    if said is not None:
        assert answer.json() == {"error": said}
    assert (not_json.status_code, not_json.json()) == (400, {"error": "Invalid JSON body"})
    assert state.transcript(run_id) is None
