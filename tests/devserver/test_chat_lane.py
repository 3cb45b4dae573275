"""Device chats on the dev server (`DevState(lane="automation")`): the claim gate of a turn,
the claimed payload, `complete-chat`'s answers, the history kept from completed turns, and
the `/_dev` routes that let a person write."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from device_agent.devserver import DevServer, DevState
from device_agent.devserver.routes_chat import MAX_REPLY_BYTES, NO_REPLY, TRUNCATED_BY_SERVER
from tests.support.clock import FakeClock
from tests.support.devserver import client_for

WORKER = "headless:box"
KINDS = ["claude-code"]
GATE = {
    "capabilities": {"automations.execute": True},
    "backend_capacity": {"compiled_connector": 0},
}


@pytest.fixture
def state(clock: FakeClock) -> DevState:
    return DevState(create_checkin_watcher=False, clock=clock, lane="automation")


@pytest.fixture
def admin(server: DevServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5.0) as http:
        yield http


def poll(http: httpx.Client, **extra: Any) -> dict[str, Any]:
    body = {"worker_id": WORKER, "platform": "headless", "app_version": "0.3.0", **GATE}
    answer = http.post("/api/workers/poll", json=body | {"agent_kinds": KINDS} | extra)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def report(http: httpx.Client, run_id: int, **body: Any) -> httpx.Response:
    chat_report = {
        "worker_id": WORKER,
        "output": "Nothing new on Atlas.",
        "error": None,
        "exit_code": 0,
        "exit_signal": None,
        "exit_reason": "ok",
    } | body
    return http.post(f"/api/workers/me/runs/{run_id}/complete-chat", json=chat_report)


def conversation(state: DevState, **kw: Any) -> str:
    return state.add_conversation(WORKER, **kw)


# ============================================================ claim gate


def test_a_turn_is_claimed_with_the_chat_payload_and_a_session_for_its_conversation(
    state: DevState, client: httpx.Client
) -> None:
    chat = conversation(
        state,
        agent_name="Researcher",
        identity_md="You are careful.",
        execution_config={"timeout_seconds": 90},
    )
    run_id = state.post_message(chat, "What changed today?", ephemeral_context="Atlas: 1 review")
    answer = poll(client)
    assert (answer["run_id"], answer["run_type"]) == (run_id, "chat_message")
    assert answer["payload"]["chat"] == {
        "agent_kind": "claude-code",
        "message": "What changed today?",
        "history": [],
        "agent": {"id": "default", "name": "Researcher", "identity_md": "You are careful."},
        "execution_config": {"timeout_seconds": 90},
        "ephemeral_context": "Atlas: 1 review",
    }
    context = answer["payload"]["context"]
    device = state.device(WORKER)
    assert device is not None
    assert context["device"] == {"worker_id": device.id}
    assert context["agent_session"]["conversation_id"] == chat
    assert context["agent_session"]["token"] == state.run(run_id).session_token


def test_a_turn_goes_only_to_a_device_that_lists_its_agent_kind(
    state: DevState, client: httpx.Client
) -> None:
    run_id = state.post_message(conversation(state, agent_kind="codex"), "hi")
    assert "run_id" not in poll(client)  # claude-code only
    assert "run_id" not in poll(client, agent_kinds=None)  # not listing any is not listing it
    assert state.run(run_id).status == "pending"
    assert poll(client, agent_kinds=["claude-code", "codex"])["run_id"] == run_id


def test_one_turn_per_conversation_at_a_time_oldest_first(
    state: DevState, client: httpx.Client
) -> None:
    chat, other = conversation(state), conversation(state)
    first = state.post_message(chat, "one")
    second = state.post_message(chat, "two")
    elsewhere = state.post_message(other, "three")
    assert poll(client)["run_id"] == first
    assert poll(client)["run_id"] == elsewhere  # `second` waits for `first`
    assert "run_id" not in poll(client)
    assert report(client, first).json() == {"ok": True, "status": "completed"}
    claimed = poll(client)
    assert claimed["run_id"] == second
    assert claimed["payload"]["chat"]["history"] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "Nothing new on Atlas."},
    ]


def test_a_conversation_exists_only_on_a_current_server(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="lane='automation'"):
        DevState(clock=clock).add_conversation(WORKER)


# ========================================================== complete-chat


def test_the_history_keeps_the_last_twelve_entries_of_completed_turns(
    state: DevState, client: httpx.Client
) -> None:
    chat = conversation(state)
    for number in range(8):
        run_id = state.post_message(chat, f"message {number}")
        assert poll(client)["run_id"] == run_id
        assert report(client, run_id, output=f"reply {number}").json()["status"] == "completed"
    state.post_message(chat, "and now?")
    history = poll(client)["payload"]["chat"]["history"]
    assert len(history) == 12
    assert history[0] == {"role": "user", "content": "message 2"}
    assert history[-1] == {"role": "assistant", "content": "reply 7"}
    assert len(state.conversation(chat).history) == 16


def test_an_empty_reply_or_an_error_fails_the_turn_and_adds_nothing_to_the_history(
    state: DevState, client: httpx.Client
) -> None:
    chat = conversation(state)
    empty = state.post_message(chat, "hello?")
    poll(client)
    assert report(client, empty, output=" \n").json() == {"ok": True, "status": "failed"}
    assert state.run(empty).error == NO_REPLY
    failing = state.post_message(chat, "again?")
    poll(client)
    answer = report(client, failing, output="", error="claude: quota exceeded", exit_code=1)
    assert answer.json() == {"ok": True, "status": "failed"}
    run = state.run(failing)
    assert (run.error, run.exit_code, run.exit_reason) == ("claude: quota exceeded", 1, "ok")
    assert state.conversation(chat).history == []


def test_the_same_report_again_is_answered_idempotently(
    state: DevState, client: httpx.Client
) -> None:
    run_id = state.post_message(conversation(state), "hi")
    poll(client)
    assert report(client, run_id).json() == {"ok": True, "status": "completed"}
    assert report(client, run_id).json() == {"ok": True, "status": "completed", "idempotent": True}
    assert state.run(run_id).completions_committed == 1


def test_a_report_for_a_cancelled_turn_is_answered_not_refused(
    state: DevState, client: httpx.Client
) -> None:
    run_id = state.post_message(conversation(state), "hi")
    poll(client)
    state.cancel_run(run_id)
    assert (
        client.post(
            "/api/workers/heartbeat", json={"run_id": run_id, "worker_id": WORKER}
        ).status_code
        == 409
    )
    answer = report(client, run_id, error="cancelled: stopped", exit_reason="cancelled")
    assert answer.json() == {"ok": True, "status": "failed", "idempotent": True}
    assert state.run(run_id).status == "cancelled"


def test_a_long_reply_is_cut_by_the_server(state: DevState, client: httpx.Client) -> None:
    run_id = state.post_message(chat := conversation(state), "hi")
    poll(client)
    assert report(client, run_id, output="é" * MAX_REPLY_BYTES).json()["status"] == "completed"
    stored = state.conversation(chat).history[-1]["content"]
    assert stored.endswith(TRUNCATED_BY_SERVER)
    assert len(stored.removesuffix(TRUNCATED_BY_SERVER).encode()) <= MAX_REPLY_BYTES


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"worker_id": 7}, 400, "Invalid device chat completion body"),
        ({"exit_reason": "exploded"}, 400, "Invalid device chat completion body"),
        ({"output": None}, 400, "Invalid device chat completion body"),
        ({"exit_code": 1.5}, 400, "Invalid device chat completion body"),
        ({"worker_id": "headless:other"}, 403, "Forbidden"),
    ],
)
def test_a_bad_report_is_refused(
    state: DevState, client: httpx.Client, body: dict[str, Any], status: int, error: str
) -> None:
    run_id = state.post_message(conversation(state), "hi")
    poll(client)
    answer = report(client, run_id, **body)
    assert (answer.status_code, answer.json()) == (status, {"error": error})
    assert state.run(run_id).status == "running"


def test_a_report_to_a_run_that_is_no_chat_is_not_found(
    state: DevState, client: httpx.Client
) -> None:
    automation = state.add_automation("Summarise", pinned_worker_id=WORKER)
    run_id = state.queue_automation_run(automation)
    poll(client)
    answer = report(client, run_id)
    assert (answer.status_code, answer.json()) == (404, {"error": "Device chat run not found"})
    missing = report(client, 999)
    assert (missing.status_code, missing.json()) == (404, {"error": "Run not found"})


# ================================================================== /_dev


def test_a_person_writes_through_dev_routes_and_reads_the_conversation(
    admin: httpx.Client, server: DevServer, token: str
) -> None:
    made = admin.post(
        "/_dev/conversations", json={"pinned_worker_id": WORKER, "agent_name": "Helper"}
    ).json()
    chat = made["conversation_id"]
    run_id = admin.post(f"/_dev/conversations/{chat}/messages", json={"message": "hi"}).json()[
        "run_id"
    ]
    with client_for(server, token) as device:
        assert poll(device)["run_id"] == run_id
        assert report(device, run_id, output="Hello!").json()["status"] == "completed"
    shown = admin.get(f"/_dev/conversations/{chat}").json()
    assert shown == {
        "conversation_id": chat,
        "agent_kind": "claude-code",
        "history": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}],
        "turns": [
            {
                "run_id": run_id,
                "status": "completed",
                "message": "hi",
                "reply": "Hello!",
                "error": None,
                "exit_reason": "ok",
            }
        ],
    }
    assert admin.get("/_dev/conversations/conv_404").status_code == 404
    state_json = admin.get("/_dev/state").json()
    assert [c["id"] for c in state_json["conversations"]] == [chat]
