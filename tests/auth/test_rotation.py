"""Rotation: a child token re-mints itself below 30 days, stored before use, one process at once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from device_agent.config import Settings
from device_agent.identity.credentials import CredentialError, resolve_token, token_problem
from device_agent.identity.device_token import maybe_rotate, mint_child_token
from device_agent.identity.errors import AuthRefused, Unreachable
from device_agent.identity.http import account_client
from device_agent.identity.store import CHILD, DAY, PAT, Credential, TokenStore, needs_rotation
from device_agent.identity.tokens import Tokens

from .conftest import INVALID_TOKEN, REPO, SERVER, WORKER, Lobu, child_token

NOW = 1_800_000_000.0


def child(token: str, days_left: float) -> Credential:
    return Credential(
        token=token, kind=CHILD, worker_id=WORKER, expires_at=NOW + days_left * DAY, org_slug="me"
    )


def rotate(store: TokenStore) -> Credential | None:
    async def go() -> Credential | None:
        async with account_client(SERVER) as client:
            return await maybe_rotate(store, client, label="laptop", now=NOW)

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("credential", "due"),
    [
        (child("owl_pat_a", 29.9), True),
        (child("owl_pat_a", 30.1), False),
        (child("owl_pat_a", -1), True),
        (Credential(token="owl_pat_a", kind=PAT, expires_at=NOW), False),  # pasted: never
    ],
)
def test_rotation_is_due_below_30_days_for_child_tokens_only(
    credential: Credential, due: bool
) -> None:
    assert needs_rotation(credential, NOW) is due


def test_a_token_with_time_left_is_used_as_is(settings: Settings, lobu: Lobu) -> None:
    store = TokenStore(settings.paths.state_dir, SERVER)
    store.save(child("owl_pat_" + "o" * 32, 45))
    mint = lobu.mint()
    assert rotate(store) == child("owl_pat_" + "o" * 32, 45)
    assert mint.call_count == 0


def test_rotation_stores_the_new_token_before_returning_it(settings: Settings, lobu: Lobu) -> None:
    store = TokenStore(settings.paths.state_dir, SERVER)
    old = "owl_pat_" + "o" * 32
    store.save(child(old, 10))
    lobu.minted.append(old)
    lobu.mint()
    fresh = rotate(store)
    assert lobu.mint_bearers == [old]  # the child re-minted itself
    assert fresh is not None
    assert fresh.token == child_token(2)
    assert store.load() == fresh  # what is used is what is stored
    assert fresh.org_slug == "me"
    assert old in lobu.revoked


def test_a_bound_token_refused_before_its_expiry_is_not_replaced(
    settings: Settings, lobu: Lobu
) -> None:
    store = TokenStore(settings.paths.state_dir, SERVER)
    old = "owl_pat_" + "o" * 32
    store.save(child(old, 10))
    lobu.router.post("/api/me/devices/mint-child-token").respond(401, json=INVALID_TOKEN)
    with pytest.raises(AuthRefused, match="was not replaced: run `device-agent login` again"):
        rotate(store)
    kept = store.load()
    assert kept is not None
    assert kept.token == old
    assert kept.refused
    with pytest.raises(CredentialError, match=r"before its expiry .*: log in again"):
        resolve_token(settings)


# ------------------------------------------------------- two processes at once


class MintServer(ThreadingHTTPServer):
    """A tiny loopback Lobu whose mint revokes every earlier token of the worker_id."""

    def __init__(self, first: str) -> None:
        super().__init__(("127.0.0.1", 0), MintHandler)
        self.valid = {first}
        self.minted: list[str] = []
        self.guard = threading.Lock()


class MintHandler(BaseHTTPRequestHandler):
    server: MintServer

    def do_POST(self) -> None:
        bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.guard:
            if bearer not in self.server.valid:
                status, answer = 401, INVALID_TOKEN
            else:
                token = child_token(len(self.server.minted) + 1)
                self.server.minted.append(token)
                self.server.valid = {token}
                status = 200
                answer = {
                    "worker_id": body["worker_id"],
                    "access_token": token,
                    "expires_at": "2030-01-01T00:00:00Z",
                }
        raw = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def mint_server() -> Iterator[MintServer]:
    server = MintServer("owl_pat_" + "o" * 32)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


ROTATE_ONCE = """
import asyncio, hashlib, sys
from pathlib import Path
from device_agent.identity.device_token import maybe_rotate
from device_agent.identity.http import account_client
from device_agent.identity.store import TokenStore

async def main():
    store = TokenStore(Path(sys.argv[1]), sys.argv[2])
    async with account_client(sys.argv[2]) as client:
        credential = await maybe_rotate(store, client, label="laptop")
    print(hashlib.sha256(credential.token.encode()).hexdigest())

asyncio.run(main())
"""


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.mark.usefixtures("no_keyring")
def test_two_processes_rotating_at_once_leave_exactly_one_valid_token_stored(
    isolated_home: Path, mint_server: MintServer
) -> None:
    url = f"http://127.0.0.1:{mint_server.server_address[1]}"
    state_dir = isolated_home / "state"
    store = TokenStore(state_dir, url)
    old = next(iter(mint_server.valid))
    store.save(Credential(token=old, kind=CHILD, worker_id=WORKER, expires_at=time.time() + DAY))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ROTATE_ONCE, str(state_dir), url],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert len(mint_server.minted) == 1  # the second process saw the first one's token
    assert mint_server.valid == {mint_server.minted[0]}
    stored = TokenStore(state_dir, url).load()
    assert stored is not None
    assert stored.token == mint_server.minted[0]
    assert [out.strip() for out, _ in results] == [sha(stored.token)] * 2
    for out, err in results:  # the token itself never reaches the output
        assert stored.token not in out + err
        assert old not in out + err


def test_rotation_with_the_server_down_keeps_the_old_token(settings: Settings, lobu: Lobu) -> None:
    store = TokenStore(settings.paths.state_dir, SERVER)
    store.save(child("owl_pat_" + "o" * 32, 10))
    lobu.router.post("/api/me/devices/mint-child-token").mock(
        side_effect=httpx.ConnectError("refused")
    )
    with pytest.raises(Unreachable, match="cannot reach"):
        rotate(store)
    assert store.load() == child("owl_pat_" + "o" * 32, 10)


def test_a_rotation_bound_to_an_invalid_worker_id_stores_nothing(
    settings: Settings, lobu: Lobu
) -> None:
    """Issue 21, point 10: the worker_id of a minted token is checked before it is kept."""
    store = TokenStore(settings.paths.state_dir, SERVER)
    store.save(child("owl_pat_" + "o" * 32, 10))
    lobu.bound_worker_id = "line\nbreak"
    lobu.mint()
    with pytest.raises(Unreachable, match="not a valid worker_id"):
        rotate(store)
    assert store.load() == child("owl_pat_" + "o" * 32, 10)


# ------------------------------------------------------------- the daemon's view


def test_the_daemon_rotates_through_its_tokens_and_uses_the_new_one(
    settings: Settings, lobu: Lobu
) -> None:
    store = TokenStore(settings.paths.state_dir, SERVER)
    old = "owl_pat_" + "o" * 32
    store.save(Credential(token=old, kind=CHILD, worker_id=WORKER, expires_at=time.time() + DAY))
    lobu.minted.append(old)
    lobu.mint()
    tokens = Tokens(settings, old)
    asyncio.run(tokens.rotate_if_due())
    assert tokens.current() == child_token(2)
    stored = store.load()
    assert stored is not None
    assert stored.token == child_token(2)


def test_a_check_that_finds_nothing_due_builds_no_http_client(
    settings: Settings, lobu: Lobu, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's check at start and every few hours: httpx and a TLS context only for a
    rotation that is due."""
    token = "owl_pat_" + "o" * 32
    TokenStore(settings.paths.state_dir, SERVER).save(
        Credential(token=token, kind=CHILD, worker_id=WORKER, expires_at=time.time() + 60 * DAY)
    )
    route = lobu.mint()

    def no_client(*args: object, **kwargs: object) -> object:
        raise AssertionError("an HTTP client was built")

    monkeypatch.setattr("device_agent.identity.tokens.account_client_for", no_client)
    tokens = Tokens(settings, token)
    asyncio.run(tokens.rotate_if_due())
    assert route.call_count == 0
    assert tokens.current() == token


def test_a_check_takes_up_a_token_another_process_stored(settings: Settings, lobu: Lobu) -> None:
    old, new = "owl_pat_" + "o" * 32, "owl_pat_" + "n" * 32
    TokenStore(settings.paths.state_dir, SERVER).save(
        Credential(token=new, kind=CHILD, worker_id=WORKER, expires_at=time.time() + 89 * DAY)
    )
    route = lobu.mint()
    tokens = Tokens(settings, old)  # what the daemon started with, before the tray's rotation
    asyncio.run(tokens.rotate_if_due())
    assert route.call_count == 0
    assert tokens.current() == new


def test_a_401_on_a_bound_token_before_expiry_flags_it_for_a_new_login(
    settings: Settings,
) -> None:
    store = TokenStore(settings.paths.state_dir, SERVER)
    token = "owl_pat_" + "o" * 32
    store.save(Credential(token=token, kind=CHILD, worker_id=WORKER, expires_at=time.time() + DAY))
    tokens = Tokens(settings, token)
    assert asyncio.run(tokens.refresh()) is False  # nothing to retry with
    assert token_problem(settings) == "log in again: refused by the server (401)"


@pytest.mark.parametrize("expires_at", [None, "not a date"])
def test_a_mint_answer_without_a_usable_expiry_counts_90_days(
    lobu: Lobu, expires_at: str | None
) -> None:
    lobu.router.post("/api/me/devices/mint-child-token").respond(
        200,
        json={"worker_id": WORKER, "access_token": child_token(1), "expires_at": expires_at},
    )

    async def go() -> Credential:
        async with account_client(SERVER) as client:
            return await mint_child_token(
                client, "owl_pat_user", worker_id=WORKER, label="l", now=NOW
            )

    assert asyncio.run(go()).expires_at == NOW + 90 * DAY


def test_the_rotation_threshold_and_client_name_come_from_the_settings(
    settings: Settings, lobu: Lobu
) -> None:
    store = TokenStore(settings.paths.state_dir, SERVER)
    old = "owl_pat_" + "o" * 32
    store.save(
        Credential(token=old, kind=CHILD, worker_id=WORKER, expires_at=time.time() + 9 * DAY)
    )
    lobu.minted.append(old)
    route = lobu.mint()

    patient = Tokens(replace(settings, rotate_days_left=5), old)
    asyncio.run(patient.rotate_if_due())  # 9 days left, threshold 5: nothing to do
    assert route.call_count == 0
    assert patient.current() == old

    named = Tokens(replace(settings, rotate_days_left=10, client_name="acme-fleet"), old)
    asyncio.run(named.rotate_if_due())
    assert named.current() == child_token(2)
    assert route.calls.last.request.headers["X-Lobu-Client"] == "acme-fleet"
