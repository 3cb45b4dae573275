"""Login on the dev server: the OAuth device flow, local-init, child tokens."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from device_agent.devserver import DevServer, DevState, seed_demo_runs
from device_agent.devserver.oauth import DEVICE_CODE_GRANT
from tests.support.clock import FakeClock
from tests.support.devserver import WID, client_for, poll

SCOPE = "device_worker:run mcp:read mcp:write profile:read"


@pytest.fixture
def anonymous(server: DevServer) -> Iterator[httpx.Client]:
    with client_for(server, None) as http:
        yield http


def register(http: httpx.Client) -> str:
    answer = http.post(
        "/oauth/register",
        json={
            "client_name": "device-agent",
            "grant_types": [DEVICE_CODE_GRANT, "refresh_token"],
            "token_endpoint_auth_method": "none",
            "scope": SCOPE,
        },
    )
    assert answer.status_code == 201
    client_id: str = answer.json()["client_id"]
    return client_id


def start_flow(http: httpx.Client) -> tuple[str, dict[str, Any]]:
    client_id = register(http)
    answer = http.post("/oauth/device_authorization", json={"client_id": client_id, "scope": SCOPE})
    assert answer.status_code == 200
    return client_id, answer.json()


def poll_token(http: httpx.Client, client_id: str, device_code: str) -> httpx.Response:
    body = {"grant_type": DEVICE_CODE_GRANT, "device_code": device_code, "client_id": client_id}
    return http.post("/oauth/token", json=body)


def test_discovery_names_only_real_endpoints(anonymous: httpx.Client, server: DevServer) -> None:
    meta = anonymous.get("/.well-known/oauth-authorization-server").json()
    assert meta["device_authorization_endpoint"] == f"{server.url}/oauth/device_authorization"
    assert meta["token_endpoint"] == f"{server.url}/oauth/token"
    assert meta["registration_endpoint"] == f"{server.url}/oauth/register"
    assert meta["revocation_endpoint"] == f"{server.url}/oauth/revoke"


def test_a_shorter_poll_interval_is_asked_for_and_kept(
    anonymous: httpx.Client, state: DevState, clock: FakeClock
) -> None:
    state.oauth.poll_interval = 1
    client_id, flow = start_flow(anonymous)
    assert flow["interval"] == 1
    assert poll_token(anonymous, client_id, flow["device_code"]).json()["error"] == (
        "authorization_pending"
    )
    clock.advance(1)
    again = poll_token(anonymous, client_id, flow["device_code"])
    assert again.json()["error"] == "authorization_pending"  # not slow_down


def test_device_flow_pending_slow_down_then_tokens(
    anonymous: httpx.Client, server: DevServer, clock: FakeClock
) -> None:
    client_id, flow = start_flow(anonymous)
    assert (flow["expires_in"], flow["interval"]) == (900, 5)
    assert flow["verification_uri"] == f"{server.url}/oauth/device"
    assert flow["verification_uri_complete"].endswith(f"?user_code={flow['user_code']}")

    pending = poll_token(anonymous, client_id, flow["device_code"])
    assert (pending.status_code, pending.json()["error"]) == (400, "authorization_pending")
    too_soon = poll_token(anonymous, client_id, flow["device_code"])
    assert too_soon.json()["error"] == "slow_down"

    approved = anonymous.post("/_dev/oauth/approve", json={"user_code": flow["user_code"]})
    assert approved.status_code == 200
    clock.advance(10)
    tokens = poll_token(anonymous, client_id, flow["device_code"]).json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 86400
    assert tokens["scope"] == SCOPE
    with client_for(server, tokens["access_token"]) as user:
        assert poll(user).status_code == 200  # accepted by the worker routes, never bound
    used = poll_token(anonymous, client_id, flow["device_code"])
    assert used.json()["error"] == "invalid_grant"  # a device code is exchanged once


def test_denied_and_expired_codes(anonymous: httpx.Client, clock: FakeClock) -> None:
    client_id, denied = start_flow(anonymous)
    anonymous.post("/_dev/oauth/deny", json={"user_code": denied["user_code"]})
    assert poll_token(anonymous, client_id, denied["device_code"]).json() == {
        "error": "access_denied",
        "error_description": "User denied the authorization request",
    }
    late_client, late = start_flow(anonymous)
    clock.advance(901)
    assert poll_token(anonymous, late_client, late["device_code"]).json() == {
        "error": "expired_token",
        "error_description": "Device code has expired",
    }


def test_the_verification_page_approves_a_code(anonymous: httpx.Client, clock: FakeClock) -> None:
    client_id, flow = start_flow(anonymous)
    page = anonymous.get("/oauth/device", params={"user_code": flow["user_code"]})
    assert flow["user_code"] in page.text
    form = {"user_code": flow["user_code"].lower(), "action": "approve"}
    assert anonymous.post("/oauth/device", data=form).status_code == 200
    assert "access_token" in poll_token(anonymous, client_id, flow["device_code"]).json()


def test_refresh_rotates_the_refresh_token(
    anonymous: httpx.Client, server: DevServer, clock: FakeClock
) -> None:
    client_id, flow = start_flow(anonymous)
    anonymous.post("/_dev/oauth/approve", json={"user_code": flow["user_code"]})
    first = poll_token(anonymous, client_id, flow["device_code"]).json()

    body = {"grant_type": "refresh_token", "client_id": client_id}
    second = anonymous.post("/oauth/token", json=body | {"refresh_token": first["refresh_token"]})
    replayed = anonymous.post("/oauth/token", json=body | {"refresh_token": first["refresh_token"]})

    assert second.status_code == 200
    assert second.json()["refresh_token"] != first["refresh_token"]
    assert replayed.json() == {
        "error": "invalid_grant",
        "error_description": "Invalid or expired refresh token",
    }
    clock.advance(86401)  # access tokens live 24 h
    with client_for(server, second.json()["access_token"]) as expired:
        assert poll(expired).status_code == 401


def test_revocation_kills_an_access_token(anonymous: httpx.Client, server: DevServer) -> None:
    client_id, flow = start_flow(anonymous)
    anonymous.post("/_dev/oauth/approve", json={"user_code": flow["user_code"]})
    tokens = poll_token(anonymous, client_id, flow["device_code"]).json()
    revoked = anonymous.post(
        "/oauth/revoke", json={"token": tokens["access_token"], "client_id": client_id}
    )
    assert revoked.status_code == 200
    with client_for(server, tokens["access_token"]) as dead:
        assert poll(dead).status_code == 401


def test_unknown_clients_and_grants_are_refused(anonymous: httpx.Client) -> None:
    unknown = anonymous.post("/oauth/device_authorization", json={"client_id": "nope"})
    assert unknown.json() == {"error": "invalid_client", "error_description": "Unknown client_id"}
    code_only = anonymous.post(
        "/oauth/register", json={"client_name": "web", "grant_types": ["authorization_code"]}
    ).json()["client_id"]
    refused = anonymous.post("/oauth/device_authorization", json={"client_id": code_only})
    assert refused.json()["error"] == "unauthorized_client"
    odd = anonymous.post("/oauth/token", json={"grant_type": "password"})
    assert odd.json()["error"] == "unsupported_grant_type"


def test_child_token_is_bound_expires_in_90_days_and_a_re_mint_revokes_it(
    state: DevState, server: DevServer, client: httpx.Client
) -> None:
    poll(client)  # the device exists
    minted = client.post(
        "/api/me/devices/mint-child-token",
        json={"platform": "headless", "worker_id": "headless:box", "label": "box"},
        headers={"X-Lobu-Client": "device-agent"},
    ).json()
    assert minted["worker_id"] == "headless:box"
    assert minted["expires_at"] == "2025-09-13T12:30:00.000Z"  # T0 + 90 days
    child = minted["access_token"]
    with client_for(server, child) as device:
        mismatch = poll(device)  # body worker_id is WID, the token is bound to headless:box
        assert mismatch.json() == {
            "error": "worker_id_mismatch",
            "error_description": "this token is bound to worker_id 'headless:box'",
        }
        assert poll(device, worker_id="headless:box", platform="headless").status_code == 200
        again = device.post(
            "/api/me/devices/mint-child-token",
            json={"platform": "headless", "worker_id": "headless:box"},
        ).json()
        assert poll(device, worker_id="headless:box", platform="headless").status_code == 401
    with client_for(server, again["access_token"]) as renewed:
        assert poll(renewed, worker_id="headless:box", platform="headless").status_code == 200
        other = renewed.post(
            "/api/me/devices/mint-child-token", json={"platform": "headless", "worker_id": WID}
        )
        assert other.json()["error"] == "insufficient_scope"


def test_as_lobu_1_6_only_the_browser_extension_may_mint_a_child_token(
    state: DevState, client: httpx.Client
) -> None:
    """Issue 21, point 3: what 1.6.0 answers `login` (seen), which current servers do not."""
    state.child_tokens = "1.6.0"
    devices_before = len(state.snapshot_json()["devices"])
    for platform in ("headless", "macos"):
        refused = client.post(
            "/api/me/devices/mint-child-token",
            json={"platform": platform, "worker_id": "headless:box"},
            headers={"X-Lobu-Client": "device-agent"},
        )
        assert (refused.status_code, refused.json()) == (
            400,
            {"error": f"platform '{platform}' is not eligible for child-token mint"},
        )
    assert len(state.snapshot_json()["devices"]) == devices_before
    minted = client.post(
        "/api/me/devices/mint-child-token",
        json={"platform": "chrome-extension", "worker_id": "headless:box"},
    ).json()
    assert minted["worker_id"] != "headless:box"  # the id asked for is ignored
    assert len(minted["worker_id"]) == 36  # a random UUID
    assert minted["expires_at"] is None
    record = state.live_token(minted["access_token"])
    assert record is not None
    assert record.bound_worker_id == minted["worker_id"]
    with pytest.raises(ValueError, match="child_tokens"):
        DevState(child_tokens="1.7")  # type: ignore[arg-type]


def test_devices_list_names_the_organization(client: httpx.Client) -> None:
    poll(client)
    devices = client.get("/api/me/devices").json()["devices"]
    assert [d["worker_id"] for d in devices] == [WID]
    assert devices[0]["organization_slug"] == "dev"
    assert devices[0]["online"] is True


# ------------------------------------------------- the samples follow the first device


def mint(http: httpx.Client, worker_id: str) -> str:
    minted = http.post(
        "/api/me/devices/mint-child-token",
        json={"platform": "headless", "worker_id": worker_id, "label": "box"},
    )
    assert minted.status_code == 200, minted.text
    token: str = minted.json()["access_token"]
    return token


def test_the_first_device_that_signs_in_takes_the_samples_pinned_to_the_default(
    state: DevState, server: DevServer, client: httpx.Client
) -> None:
    said: list[str] = []
    state.on_notice = said.append
    ids = seed_demo_runs(state, "linux:default-host", follow_first_device=True)
    child = mint(client, "headless:laptop-1")
    device = state.find_device("headless:laptop-1")
    assert device is not None
    assert [state.watcher(i).device_id for i in ids] == [device.id, device.id]
    [queued] = state.runs()
    assert (queued.device_id, queued.approved_input["device_worker_id"]) == (device.id, device.id)
    with client_for(server, child) as laptop:
        claimed = poll(laptop, worker_id="headless:laptop-1", platform="headless").json()
    assert claimed["run_id"] == queued.id
    assert said == [
        "The sample watchers 'Recent changes' (#1), 'Hello' (#2) are now pinned to "
        "headless:laptop-1, the first device that signed in (they were pinned to "
        "linux:default-host), with their queued runs."
    ]


def test_a_later_device_is_told_how_to_pin_a_sample_and_the_pin_route_does_it(
    state: DevState, server: DevServer, client: httpx.Client
) -> None:
    ids = seed_demo_runs(state, "linux:default-host", follow_first_device=True)
    mint(client, "headless:first")
    mint(client, "headless:second")
    mint(client, "headless:second")  # a re-mint (rotation) is not told again
    assert len(state.samples.notices) == 2
    told = state.samples.notices[1]
    assert "Device headless:second signed in; the sample watchers" in told
    assert "stay pinned to headless:first" in told
    route = f"{server.url}/_dev/watchers/{ids[-1]}/pin"
    assert f'curl -X POST {route} -d \'{{"worker_id": "headless:second"}}\'' in told
    with client_for(server, None) as anonymous:
        pinned = anonymous.post(
            f"/_dev/watchers/{ids[-1]}/pin", content=b'{"worker_id": "headless:second"}'
        )
        refused = anonymous.post(f"/_dev/watchers/{ids[-1]}/pin", json={"worker_id": "a b"})
    assert pinned.status_code == 200, pinned.text
    assert refused.status_code == 400
    second = state.find_device("headless:second")
    assert second is not None
    assert state.watcher(ids[-1]).device_id == second.id
    assert [run.device_id for run in state.runs()] == [second.id]  # its queued run went along


def test_samples_pinned_on_purpose_stay_where_they_are(
    state: DevState, client: httpx.Client
) -> None:
    ids = seed_demo_runs(state, "linux:chosen", follow_first_device=False)
    chosen = state.find_device("linux:chosen")
    assert chosen is not None
    mint(client, "headless:laptop-1")
    assert [state.watcher(i).device_id for i in ids] == [chosen.id, chosen.id]
    [told] = state.samples.notices
    assert "stay pinned to linux:chosen. To pin one to this device" in told


def test_the_sample_automation_follows_the_first_device_on_the_automation_lane(
    clock: FakeClock,
) -> None:
    state = DevState(create_checkin_watcher=False, clock=clock, lane="automation")
    token = state.add_token()
    [ident] = seed_demo_runs(state, "linux:default-host", follow_first_device=True)
    with DevServer(state).running_in_thread() as server, client_for(server, token) as http:
        mint(http, "headless:laptop-1")
    device = state.find_device("headless:laptop-1")
    assert device is not None
    automation = state.find_automation(int(ident))
    assert automation is not None
    assert automation.device_id == device.id
    assert [run.device_id for run in state.runs()] == [device.id]
    assert "sample automations 'Recent changes' (#1)" in state.samples.notices[0]


def test_revoke_kills_a_device_child_token_but_not_a_web_app_pat(
    state: DevState, server: DevServer, client: httpx.Client, token: str
) -> None:
    child = mint(client, "headless:laptop-1")
    with client_for(server, None) as anonymous:
        for value in (child, token):
            answer = anonymous.post("/oauth/revoke", data={"token": value})
            assert answer.status_code == 200
    assert state.live_token(child) is None  # the device's logout
    assert state.live_token(token) is not None  # a PAT of the web app: revoked there
