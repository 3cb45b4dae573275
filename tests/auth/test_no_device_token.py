"""Issue 21, point 3: `login` on a server that mints no device token (Lobu 1.6.0 lets only its
browser extension mint one) leaves no token behind that it neither keeps nor revokes.

`login --local` keeps the local server's own token (local-init mints one on every call and
nothing can revoke it) and says plainly what it can and cannot do; a later `login --local`
signs in with it rather than minting another. The browser login revokes what the device
flow gave and stores nothing."""

from __future__ import annotations

from urllib.parse import parse_qs

import httpx
import respx

from device_agent.config import Settings
from device_agent.identity import commands
from device_agent.identity.store import CHILD, LOCAL, PAT, Credential, TokenStore

from .conftest import (
    INVALID_TOKEN,
    LOCAL_PAT,
    REFRESH_TOKEN,
    SERVER,
    USER_TOKEN,
    Captured,
    Lobu,
    approved,
    child_token,
    options,
)

NOT_ELIGIBLE = {"error": "platform 'headless' is not eligible for child-token mint"}
LOCAL_INIT = {
    "session_token": "session-secret-xyz",
    "cookie_name": "lobu_session",
    "device_token": LOCAL_PAT,
    "device_token_scope": "device_worker:run mcp:read mcp:write mcp:admin profile:read",
    "user": {"id": "u1", "email": "me@example.com", "name": "Me"},
    "organization": {"id": "o1", "slug": "me-personal", "name": "Me"},
}


def stored(settings: Settings) -> Credential | None:
    return TokenStore(settings.paths.state_dir, SERVER).load()


def local_init(lobu: Lobu) -> respx.Route:
    return lobu.router.post("/api/local-init").respond(200, json=LOCAL_INIT)


def login(settings: Settings, lobu: Lobu, captured: Captured, *, local: bool) -> int:
    return commands.login(
        settings, options(local=local), console=captured.console, wiring=lobu.wiring()
    )


def mint_bearers(route: respx.Route) -> list[str]:
    return [c.request.headers["authorization"].removeprefix("Bearer ") for c in route.calls]


# ------------------------------------------------------------------ login --local


def test_local_keeps_the_local_token_when_no_device_token_is_minted_and_says_so(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    init = local_init(lobu)
    mint = lobu.router.post("/api/me/devices/mint-child-token").respond(400, json=NOT_ELIGIBLE)
    assert login(settings, lobu, captured, local=True) == 0, captured.text
    assert init.call_count == 1
    assert mint.call_count == 1
    credential = stored(settings)
    assert credential is not None
    assert (credential.token, credential.kind, credential.worker_id, credential.org_slug) == (
        LOCAL_PAT,
        LOCAL,
        None,
        "me-personal",
    )
    out = captured.out.getvalue()
    assert "with the local server's own token" in out
    assert "platform 'headless' is not eligible for child-token mint" in out
    assert "not bound to this device" in out
    assert "Run now works for a watcher pinned to this device" in out
    assert "Run now for an automation does not" in out
    assert "does not expire: revoke it in the web app" in out
    assert captured.err.getvalue() == ""
    assert "again" not in out  # nothing to retry: a retry would get the same answer
    assert LOCAL_PAT not in captured.text


def test_local_again_signs_in_with_the_kept_token_and_mints_no_other(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    init = local_init(lobu)
    refused = lobu.router.post("/api/me/devices/mint-child-token").respond(400, json=NOT_ELIGIBLE)
    for _ in range(3):
        assert login(settings, lobu, captured, local=True) == 0, captured.text
    assert init.call_count == 1  # one local-init PAT in all
    assert mint_bearers(refused) == [LOCAL_PAT] * 3


def test_local_with_a_mint_that_failed_keeps_the_token_and_a_retry_trades_it(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    init = local_init(lobu)
    lobu.router.post("/api/me/devices/mint-child-token").respond(
        503, json={"error": "Service Unavailable"}
    )
    assert login(settings, lobu, captured, local=True) == 4
    credential = stored(settings)
    assert credential is not None
    assert (credential.token, credential.kind) == (LOCAL_PAT, LOCAL)
    assert "not bound to this device" in captured.out.getvalue()
    assert "run `device-agent login --local` again later" in captured.err.getvalue()
    assert "minting no other" in captured.err.getvalue()

    lobu.mint()  # the server is back: the same route now mints
    assert login(settings, lobu, captured, local=True) == 0, captured.text
    assert init.call_count == 1
    assert lobu.mint_bearers == [LOCAL_PAT]
    credential = stored(settings)
    assert credential is not None
    assert (credential.token, credential.kind, credential.org_slug) == (
        child_token(1),
        CHILD,
        "me-personal",
    )


def test_local_with_a_kept_token_the_server_no_longer_knows_signs_in_afresh_once(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    dead = "owl_pat_" + "d" * 32
    TokenStore(settings.paths.state_dir, SERVER).save(Credential(token=dead, kind=LOCAL))
    init = local_init(lobu)
    mint = lobu.mint()
    lobu.revoked.add(dead)
    assert login(settings, lobu, captured, local=True) == 0, captured.text
    assert init.call_count == 1
    assert mint_bearers(mint) == [dead, LOCAL_PAT]
    credential = stored(settings)
    assert credential is not None
    assert credential.token == child_token(1)


def test_local_with_a_pasted_token_stored_calls_local_init_as_before(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    pasted = "owl_pat_" + "p" * 32  # its binding is unknown: it is not minted with
    TokenStore(settings.paths.state_dir, SERVER).save(Credential(token=pasted, kind=PAT))
    init = local_init(lobu)
    lobu.mint()
    assert login(settings, lobu, captured, local=True) == 0, captured.text
    assert init.call_count == 1
    assert lobu.mint_bearers == [LOCAL_PAT]


def test_local_whose_fresh_token_is_refused_keeps_nothing(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    local_init(lobu)
    lobu.router.post("/api/me/devices/mint-child-token").respond(401, json=INVALID_TOKEN)
    assert login(settings, lobu, captured, local=True) == 3
    assert stored(settings) is None


# ------------------------------------------------------------- the browser login


def revocations(route: respx.Route) -> list[tuple[str, str]]:
    forms = [parse_qs(c.request.content.decode()) for c in route.calls]
    return [(form["token"][0], form["token_type_hint"][0]) for form in forms]


def test_the_browser_login_revokes_its_sign_in_when_no_device_token_is_minted(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    lobu.oauth(approved(), revocation=True)
    revoke = lobu.router.post("/oauth/revoke").respond(200, json={})
    lobu.router.post("/api/me/devices/mint-child-token").respond(400, json=NOT_ELIGIBLE)
    assert login(settings, lobu, captured, local=False) == 2
    assert revocations(revoke) == [(USER_TOKEN, "access_token"), (REFRESH_TOKEN, "refresh_token")]
    assert stored(settings) is None
    err = captured.err.getvalue()
    assert "issues no token bound to this device" in err
    assert "`device-agent login --local`" in err
    assert "`device-agent login --token-stdin`" in err
    assert "the browser sign-in was revoked on the server" in err
    assert "run `device-agent login` again" not in err  # it would meet the same answer
    assert USER_TOKEN not in captured.text
    assert REFRESH_TOKEN not in captured.text


def test_the_browser_login_says_when_its_sign_in_could_not_be_revoked(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    lobu.oauth(approved())  # no revocation endpoint advertised
    lobu.router.post("/api/me/devices/mint-child-token").mock(
        side_effect=httpx.ConnectError("refused")
    )
    assert login(settings, lobu, captured, local=False) == 4
    assert stored(settings) is None
    assert "lapses on its own" in captured.err.getvalue()
