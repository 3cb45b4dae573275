"""Run now: the lane's device route with a bound token, the tool proxy only for a watcher pinned
here, and the server's own status printed instead of a promise."""

from __future__ import annotations

import json

import pytest

from device_agent.config import Settings
from device_agent.identity import commands
from device_agent.identity.errors import UsageError
from device_agent.identity.run_now import check_item_id
from device_agent.identity.store import CHILD, PAT, Credential, TokenStore

from .conftest import SERVER, WORKER, Captured, Lobu, options

BOUND = "owl_pat_" + "b" * 32
UNBOUND = "owl_pat_" + "u" * 32
NOT_BOUND = {"error": "Token is not bound to a device worker"}
THIS_DEVICE = "0b7c-this-device-uuid"
DEVICES = {
    "devices": [
        {"id": "9a9a-other-uuid", "worker_id": "macos:desk", "organization_slug": "acme"},
        {"id": THIS_DEVICE, "worker_id": WORKER, "organization_slug": "acme"},
    ]
}


def keep(settings: Settings, credential: Credential) -> None:
    TokenStore(settings.paths.state_dir, SERVER).save(credential)


def bound(settings: Settings) -> None:
    keep(settings, Credential(token=BOUND, kind=CHILD, worker_id=WORKER, expires_at=4e9))


def run_now(settings: Settings, lobu: Lobu, captured: Captured, item: str, **kw: object) -> int:
    return commands.run_now(
        settings,
        options(item_id=item, **kw),
        console=captured.console,
        wiring=lobu.wiring(),
        poke=lambda: "asked the running agent (PID 4242) to poll now",
    )


@pytest.mark.parametrize("lane", ["watcher", "automation"])
def test_bound_token_uses_the_lanes_device_route_and_prints_the_answer(
    settings: Settings, lobu: Lobu, captured: Captured, lane: str
) -> None:
    bound(settings)
    route = lobu.router.post(f"/api/workers/me/{lane}s/7/trigger").respond(
        200, json={"run_id": 11, "status": "pending", "already_queued": False, "queued_at": "x"}
    )
    assert run_now(settings, lobu, captured, "7", lane=lane) == 0, captured.text
    assert route.calls.last.request.headers["authorization"] == f"Bearer {BOUND}"
    assert captured.out.getvalue().splitlines() == [
        f"{lane} 7: run 11 queued, server status 'pending'",
        "asked the running agent (PID 4242) to poll now",
    ]


def test_already_queued_says_so_instead_of_queuing_again(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    bound(settings)
    lobu.router.post("/api/workers/me/watchers/7/trigger").respond(
        200, json={"run_id": 11, "status": "running", "already_queued": True, "queued_at": "x"}
    )
    assert run_now(settings, lobu, captured, "7") == 0
    assert "run 11 was already running; no new run was queued" in captured.out.getvalue()


def unbound(settings: Settings, lobu: Lobu, watcher: str) -> None:
    """An unbound token, refused by the device route, on a device the server knows."""
    keep(settings, Credential(token=UNBOUND, kind=PAT))
    lobu.router.post(f"/api/workers/me/watchers/{watcher}/trigger").respond(403, json=NOT_BOUND)
    lobu.router.get("/api/me/devices").respond(200, json=DEVICES)


def get_watcher_answer(watcher: str, **fields: object) -> dict[str, object]:
    """What Lobu 1.6.0's get_watcher tool answers (trimmed): the windows, and the watcher."""
    return {
        "windows": [],
        "watcher": {"watcher_id": watcher, "watcher_name": "Digest", "status": "active"} | fields,
        "pagination": {"page": 1, "page_size": 1, "total": 0},
    }


TRIGGERED = {"action": "trigger", "watcher_id": "1", "run_id": 11, "status": "pending"}


def test_unbound_token_uses_the_tool_proxy_for_a_watcher_pinned_here(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    unbound(settings, lobu, "1")
    get = lobu.router.post("/api/acme/get_watcher").respond(
        200, json=get_watcher_answer("1", device_worker_id=THIS_DEVICE)
    )
    # as seen: the tool proxy answers without already_queued
    manage = lobu.router.post("/api/acme/manage_watchers").respond(200, json=TRIGGERED)
    assert run_now(settings, lobu, captured, "1") == 0, captured.text
    assert json.loads(get.calls.last.request.content)["watcher_id"] == "1"
    assert [json.loads(c.request.content) for c in manage.calls] == [
        {"action": "trigger", "watcher_id": "1"}  # Lobu 1.6.0 has no "get" action
    ]
    assert "watcher 1: run 11 queued, server status 'pending'" in captured.out.getvalue()


def test_a_get_watcher_that_does_not_say_is_followed_by_list_watchers(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    unbound(settings, lobu, "1")
    lobu.router.post("/api/acme/get_watcher").respond(200, json=get_watcher_answer("1"))
    listed = lobu.router.post("/api/acme/list_watchers").respond(
        200,
        json={
            "watchers": [
                {"watcher_id": "10", "device_worker_id": "9a9a-other-uuid"},
                {"watcher_id": "1", "device_worker_id": THIS_DEVICE},
            ]
        },
    )
    lobu.router.post("/api/acme/manage_watchers").respond(200, json=TRIGGERED)
    assert run_now(settings, lobu, captured, "1") == 0, captured.text
    assert listed.call_count == 1
    assert "run 11 queued" in captured.out.getvalue()


def test_unbound_token_does_not_trigger_when_the_pinning_cannot_be_confirmed(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    unbound(settings, lobu, "1")
    lobu.router.post("/api/acme/get_watcher").respond(200, json=get_watcher_answer("1"))
    lobu.router.post("/api/acme/list_watchers").respond(200, json={"watchers": []})
    manage = lobu.router.post("/api/acme/manage_watchers").respond(200, json=TRIGGERED)
    assert run_now(settings, lobu, captured, "1") == 2
    assert manage.call_count == 0
    assert "cannot confirm that watcher 1 is pinned to this device" in captured.err.getvalue()


@pytest.mark.parametrize(("pinned", "where"), [("9a9a-other-uuid", "another"), (None, "no")])
def test_unbound_token_refuses_a_watcher_pinned_elsewhere(
    settings: Settings, lobu: Lobu, captured: Captured, pinned: str | None, where: str
) -> None:
    unbound(settings, lobu, "3")
    lobu.router.post("/api/acme/get_watcher").respond(
        200, json=get_watcher_answer("3", device_worker_id=pinned)
    )
    manage = lobu.router.post("/api/acme/manage_watchers").respond(200, json=TRIGGERED)
    assert run_now(settings, lobu, captured, "3") == 2
    assert manage.call_count == 0  # no trigger
    err = captured.err.getvalue()
    assert f"watcher 3 is pinned to {where} device" in err
    assert "never reach this agent" in err
    assert captured.out.getvalue() == ""  # no pick-up promised


def test_unbound_token_and_a_watcher_the_server_does_not_have(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    unbound(settings, lobu, "99")
    # get_watcher answers an unknown id with no `watcher`
    lobu.router.post("/api/acme/get_watcher").respond(200, json={"windows": []})
    manage = lobu.router.post("/api/acme/manage_watchers").respond(200, json=TRIGGERED)
    assert run_now(settings, lobu, captured, "99") == 2
    assert manage.call_count == 0
    assert "the server has no watcher 99" in captured.err.getvalue()


UNKNOWN_GET = (
    "Unknown action: get. Valid actions: complete_window, create, create_from_version, "
    "create_version, delete, get_component_reference, get_feedback, get_version_details, "
    "get_versions, set_reaction_script, submit_feedback, trigger, update, upgrade."
)


def test_a_tool_the_server_refuses_is_named_and_the_advice_is_true(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    unbound(settings, lobu, "1")
    lobu.router.post("/api/acme/get_watcher").respond(400, json={"error": UNKNOWN_GET})
    assert run_now(settings, lobu, captured, "1") == 2
    err = captured.err.getvalue()
    assert "`get_watcher` tool, which refused: 400 'Unknown action: get." in err
    assert "nothing was queued; use Run now in the web app instead" in err
    assert "check the id" not in err


def test_the_tool_proxy_returning_a_running_run_says_none_was_queued(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    unbound(settings, lobu, "1")
    lobu.router.post("/api/acme/get_watcher").respond(
        200, json=get_watcher_answer("1", device_worker_id=THIS_DEVICE)
    )
    lobu.router.post("/api/acme/manage_watchers").respond(
        200, json={"action": "trigger", "watcher_id": "1", "run_id": 43, "status": "running"}
    )
    assert run_now(settings, lobu, captured, "1") == 0
    out = captured.out.getvalue()
    assert "the server returned run 43, status 'running'" in out
    assert "no new run was queued" in out
    assert "queued, server status" not in out


@pytest.mark.parametrize(
    ("status", "error", "says"),
    [
        (404, "Watcher not found", "the server has no watcher 12"),
        (409, "Watcher is not active", "make it active and give it an agent"),
        (409, "Watcher has no agent assigned", "make it active and give it an agent"),
        (400, "Invalid watcher_id", "nothing was queued; use Run now in the web app instead"),
        (404, "Not Found", "nothing was queued; use Run now in the web app instead"),
    ],
)
def test_a_refusal_is_explained_with_what_is_true(
    settings: Settings, lobu: Lobu, captured: Captured, status: int, error: str, says: str
) -> None:
    bound(settings)
    lobu.router.post("/api/workers/me/watchers/12/trigger").respond(status, json={"error": error})
    assert run_now(settings, lobu, captured, "12") == 2
    err = captured.err.getvalue()
    assert says in err
    assert "check the id in the web app" not in err


def test_unbound_token_on_a_device_the_server_does_not_know_yet(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    keep(settings, Credential(token=UNBOUND, kind=PAT))
    lobu.router.post("/api/workers/me/watchers/3/trigger").respond(403, json=NOT_BOUND)
    lobu.router.get("/api/me/devices").respond(200, json={"devices": []})
    assert run_now(settings, lobu, captured, "3") == 2
    assert "device-agent run --once" in captured.err.getvalue()


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        ("Watcher is not pinned to this device", "pin it to this one in the web app"),
        ("Endpoint not available to user-scoped workers", "takes the number the web app shows"),
        ("Device not registered yet — poll first", "device-agent run --once"),
    ],
)
def test_the_device_routes_refusals_come_with_the_fix(
    settings: Settings, lobu: Lobu, captured: Captured, error: str, hint: str
) -> None:
    bound(settings)
    status = 404 if "poll first" in error else 403
    lobu.router.post("/api/workers/me/watchers/12/trigger").respond(status, json={"error": error})
    assert run_now(settings, lobu, captured, "12") == 2
    assert hint in captured.err.getvalue()


@pytest.mark.parametrize("item", ["daily-digest", "Daily digest", "0"])
def test_a_slug_or_name_gets_a_hint_without_any_request(
    settings: Settings, lobu: Lobu, captured: Captured, item: str
) -> None:
    bound(settings)
    assert run_now(settings, lobu, captured, item) == 2
    assert "takes the number the web app shows" in captured.err.getvalue()
    assert lobu.router.calls.call_count == 0


def test_no_token_is_exit_3(settings: Settings, lobu: Lobu, captured: Captured) -> None:
    assert run_now(settings, lobu, captured, "7") == 3
    assert "device-agent login" in captured.err.getvalue()


def test_unbound_token_cannot_run_an_automation_now(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    keep(settings, Credential(token=UNBOUND, kind=PAT))
    lobu.router.post("/api/workers/me/automations/3/trigger").respond(403, json=NOT_BOUND)
    assert run_now(settings, lobu, captured, "3", lane="automation") == 3
    assert "run `device-agent login`" in captured.err.getvalue()
    assert lobu.router.calls.call_count == 1  # no tool-proxy detour for automations


@pytest.mark.parametrize("item_id", ["²", "①", "٣"])
def test_an_id_of_digits_that_are_not_ascii_gets_the_hint_not_a_value_error(item_id: str) -> None:
    with pytest.raises(UsageError, match="is not a watcher id"):
        check_item_id(item_id, "watcher")
