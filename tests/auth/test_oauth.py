"""The device authorization grant: waiting honours interval, slow_down, denial and expiry."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from device_agent.identity import oauth
from device_agent.identity.errors import AccountError, AuthRefused, Unreachable, UsageError
from device_agent.identity.http import (
    account_client,
)

from .conftest import SERVER, USER_TOKEN, Lobu, approved, oauth_error, pending


def wait(lobu: Lobu) -> oauth.OAuthTokens:
    async def go() -> oauth.OAuthTokens:
        async with account_client(SERVER) as client:
            endpoints = await oauth.discover(client)
            client_id = await oauth.register(client, endpoints)
            code = await oauth.request_device_code(client, endpoints, client_id)
            return await oauth.wait_for_approval(
                client, endpoints, client_id, code, sleep=lobu.sleep, clock=lobu.clock
            )

    return asyncio.run(go())


def token_calls(lobu: Lobu) -> int:
    return len([c for c in lobu.router.calls if c.request.url.path == "/oauth/token"])


def test_pending_then_approved_waits_the_interval_each_time(lobu: Lobu) -> None:
    lobu.oauth(pending(), pending(), approved())
    tokens = wait(lobu)
    assert tokens.access_token == USER_TOKEN
    assert lobu.sleeps == [5.0, 5.0, 5.0]
    form = lobu.router.calls[-1].request.content.decode()
    assert "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code" in form
    assert "client_id=client-1" in form


def test_slow_down_adds_five_seconds_for_good(lobu: Lobu) -> None:
    lobu.oauth(pending(), oauth_error("slow_down"), pending(), oauth_error("slow_down"), approved())
    wait(lobu)
    assert lobu.sleeps == [5.0, 5.0, 10.0, 10.0, 15.0]


def test_denied_says_so_plainly(lobu: Lobu) -> None:
    lobu.oauth(pending(), oauth_error("access_denied"))
    with pytest.raises(AuthRefused, match="denied in the browser; nothing was stored"):
        wait(lobu)


def test_expired_token_answer_says_to_start_again(lobu: Lobu) -> None:
    lobu.oauth(oauth_error("expired_token"))
    with pytest.raises(AuthRefused, match=r"WDJB-MJHT expired .* `device-agent login` again"):
        wait(lobu)


def test_stops_asking_once_expires_in_has_passed(lobu: Lobu) -> None:
    lobu.oauth(*[pending() for _ in range(400)])
    with pytest.raises(AuthRefused, match="was not approved within 15 minutes"):
        wait(lobu)
    token_calls = [c for c in lobu.router.calls if c.request.url.path == "/oauth/token"]
    assert len(token_calls) == 179  # 900 s at one request per 5 s; the 180th wait ends it
    assert lobu.now == 900.0


def test_metadata_pointing_to_another_origin_is_refused(lobu: Lobu) -> None:
    lobu.router.get("/.well-known/oauth-authorization-server").respond(
        200,
        json={
            "registration_endpoint": "https://evil.test/register",
            "device_authorization_endpoint": f"{SERVER}/oauth/device_authorization",
            "token_endpoint": f"{SERVER}/oauth/token",
        },
    )
    with pytest.raises(UsageError, match="another origin"):
        wait(lobu)


def test_a_server_without_device_login_gets_a_way_out(lobu: Lobu) -> None:
    lobu.router.get("/.well-known/oauth-authorization-server").respond(404)
    with pytest.raises(AccountError, match="--local"):
        wait(lobu)


def test_an_unreachable_server_says_so(lobu: Lobu) -> None:
    lobu.router.get("/.well-known/oauth-authorization-server").mock(
        side_effect=httpx.ConnectError("refused")
    )
    with pytest.raises(Unreachable, match="cannot reach"):
        wait(lobu)


# Issue 21, point 11: the server's `interval` and `expires_in` are kept within bounds.


@pytest.mark.parametrize("interval", [1e-6, 0.2, 1e-300])
def test_a_tiny_interval_polls_at_most_once_a_second(lobu: Lobu, interval: float) -> None:
    lobu.oauth(pending(), pending(), approved(), interval=interval)
    wait(lobu)
    assert lobu.sleeps == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("interval", [1e9, 3600, 1e300])
def test_a_huge_interval_polls_at_least_once_a_minute(lobu: Lobu, interval: float) -> None:
    lobu.oauth(pending(), approved(), interval=interval)
    wait(lobu)
    assert lobu.sleeps == [60.0, 60.0]


def test_a_huge_interval_never_waits_past_the_codes_expiry(lobu: Lobu) -> None:
    lobu.oauth(*[pending() for _ in range(20)], interval=1e9, expires_in=150)
    with pytest.raises(AuthRefused, match="was not approved within 2 minutes"):
        wait(lobu)
    assert lobu.sleeps == [60.0, 60.0, 30.0]  # the last wait ends at the expiry, not after it
    assert lobu.now == 150.0
    assert token_calls(lobu) == 2


def test_slow_down_never_takes_the_interval_past_a_minute(lobu: Lobu) -> None:
    lobu.oauth(*[oauth_error("slow_down") for _ in range(14)], approved())
    wait(lobu)
    assert max(lobu.sleeps) == 60.0
    assert lobu.sleeps[:3] == [5.0, 10.0, 15.0]


@pytest.mark.parametrize(("expires_in", "waited"), [(1e9, 3600.0), (1e300, 3600.0), (1e-6, 60.0)])
def test_expires_in_is_bounded_and_the_wait_stops_there(
    lobu: Lobu, expires_in: float, waited: float
) -> None:
    lobu.oauth(*[pending() for _ in range(800)], expires_in=expires_in)
    with pytest.raises(AuthRefused, match="stopped waiting, nothing was stored"):
        wait(lobu)
    assert lobu.now == waited
    assert token_calls(lobu) == waited / 5 - 1
