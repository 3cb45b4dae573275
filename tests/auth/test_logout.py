"""`logout`: revoke what can be revoked, remove every stored copy, say what was done."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import keyring
import pytest

from device_agent.config import Settings
from device_agent.identity import commands
from device_agent.identity.store import CHILD, Credential, TokenStore

from .conftest import SERVER, WORKER, Captured, Lobu, forget_keyring, options

TOKEN = "owl_pat_" + "g" * 32


def logged_in(settings: Settings) -> TokenStore:
    store = TokenStore(settings.paths.state_dir, SERVER)
    store.save(Credential(token=TOKEN, kind=CHILD, worker_id=WORKER, expires_at=1_900_000_000))
    return store


def logout(settings: Settings, lobu: Lobu, captured: Captured) -> int:
    return commands.logout(settings, options(), console=captured.console, wiring=lobu.wiring())


def test_logout_revokes_where_the_server_offers_it_and_removes_the_token(
    settings: Settings, lobu: Lobu, captured: Captured, file_keyring: Path
) -> None:
    store = logged_in(settings)
    lobu.oauth(revocation=True)
    revoke = lobu.router.post("/oauth/revoke").respond(200)
    lobu.router.get("/api/me/devices").respond(401)  # gone: the server refuses it now
    assert logout(settings, lobu, captured) == 0
    assert f"token={TOKEN}" in revoke.calls.last.request.content.decode()
    assert captured.out.getvalue().splitlines() == [
        "Revoked the token on the server.",
        f"Token for {SERVER} removed from the OS keyring (file keyring FileKeyring).",
    ]
    assert store.load() is None
    assert json.loads(file_keyring.read_text()) == {}
    assert not (settings.paths.state_dir / "credential.json").read_text().count(SERVER)


def test_logout_does_not_claim_a_revocation_the_server_did_not_make(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    logged_in(settings)
    lobu.oauth(revocation=True)
    lobu.router.post("/oauth/revoke").respond(200)  # RFC 7009: 200 even when nothing happened
    lobu.router.get("/api/me/devices").respond(200, json={"devices": []})
    assert logout(settings, lobu, captured) == 0
    out = captured.out.getvalue()
    assert "Revoked" not in out
    assert "did not revoke this token when asked" in out
    assert "stays valid on the server until 2030-03-17" in out
    assert "removed from the file" in out


def test_logout_without_a_revocation_route_says_the_token_stays_valid(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    logged_in(settings)
    lobu.oauth()
    assert logout(settings, lobu, captured) == 0
    out = captured.out.getvalue()
    assert "stays valid on the server until 2030-03-17" in out
    assert "revoke it in the web app" in out
    assert "removed from the file" in out


def test_logout_with_the_server_down_still_removes_every_copy(
    settings: Settings, lobu: Lobu, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    forget_keyring(monkeypatch)
    logged_in(settings)  # a file copy from before a keyring was installed
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.integration.file_keyring.FileKeyring")
    monkeypatch.setenv("TEST_KEYRING_FILE", str(settings.paths.state_dir.parent / "kr.json"))
    forget_keyring(monkeypatch)
    keyring.set_password("device-agent", SERVER, TOKEN)  # and one in the keyring now
    store = TokenStore(settings.paths.state_dir, SERVER)
    lobu.router.get("/.well-known/oauth-authorization-server").mock(
        side_effect=httpx.ConnectError("down")
    )
    assert logout(settings, lobu, captured) == 0
    out = captured.out.getvalue()
    assert "Could not revoke the token (cannot reach" in out
    assert "removed from the OS keyring" in out
    assert f"removed from the file {store.token_file}" in out
    assert store.load() is None


def test_logout_with_nothing_stored_says_so(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    assert logout(settings, lobu, captured) == 0
    assert captured.out.getvalue() == f"No token stored for {SERVER}.\n"
    assert lobu.router.calls.call_count == 0
