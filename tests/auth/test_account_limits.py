"""Issue 21, point 6: every account request is bounded — an overall deadline, a cap on the
answer, a length limit on a token before anything is stored — and the token lock is waited
for with a deadline: neither a hostile server nor another process hangs login, logout,
trigger or the daemon's rotation."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import json
import os
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_agent.errors import ExitCode
from device_agent.identity.commands import login, logout, run_now
from device_agent.identity.device_token import LOCK_FILE, maybe_rotate, rotation_lock
from device_agent.identity.errors import Unreachable
from device_agent.identity.http import account_client
from device_agent.identity.store import CHILD, DAY, MAX_TOKEN_CHARS, Credential, TokenStore
from tests.support.servers import HostileServer, huge, json_reply, trickle

from .conftest import SERVER, WORKER, Captured, Lobu, child_token, make_settings, options

OLD = "owl_pat_" + "o" * 32
OVERLONG = "owl_pat_" + "x" * 100_000  # under the answer's cap, far over any real token


def mint_answer(token: str) -> dict[str, str]:
    return {"worker_id": WORKER, "access_token": token, "expires_at": "2030-01-01T00:00:00Z"}


def due_store(state_dir: Path, server: str) -> TokenStore:
    """A store holding a child token with one day left: due for rotation."""
    store = TokenStore(state_dir, server)
    store.save(Credential(token=OLD, kind=CHILD, worker_id=WORKER, expires_at=time.time() + DAY))
    return store


def stored_token(store: TokenStore) -> str | None:
    credential = store.load()
    return credential.token if credential else None


# ------------------------------------------------------------------ the answer


def test_a_trickled_mint_answer_is_given_up_at_the_deadline(isolated_home: Path) -> None:
    """A byte every 0.1 s never trips a per-read timeout: the overall deadline ends it."""
    answer = json.dumps(mint_answer(child_token(2))).encode() + b" " * 2000

    async def go() -> None:
        async with HostileServer([trickle(answer, interval=0.1)]) as server:
            store = due_store(isolated_home / "state", server.url)
            started = time.monotonic()
            async with account_client(server.url, timeout=0.5) as client:
                with pytest.raises(Unreachable, match=r"did not answer within 0.5 s"):
                    await maybe_rotate(store, client, label="laptop")
            assert time.monotonic() - started < 5
            assert server.sent[0].body_bytes < len(answer)
            assert stored_token(store) == OLD

    asyncio.run(go())


def test_a_huge_token_answer_is_refused_unread_and_nothing_is_stored(isolated_home: Path) -> None:
    size = 200 * 1024 * 1024

    async def go() -> None:
        async with HostileServer([huge(size)]) as server:
            store = due_store(isolated_home / "state", server.url)
            tracemalloc.start()
            try:
                async with account_client(server.url) as client:
                    with pytest.raises(Unreachable, match="answer too large"):
                        await maybe_rotate(store, client, label="laptop")
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak < 16 * 1024 * 1024  # the answer was never held whole
            assert server.sent[0].body_bytes < size // 10  # nor read much past the cap
            assert stored_token(store) == OLD

    asyncio.run(go())


def test_a_token_too_long_to_be_one_is_refused_and_nothing_is_stored(isolated_home: Path) -> None:
    async def go() -> None:
        async with HostileServer([json_reply(mint_answer(OVERLONG))]) as server:
            store = due_store(isolated_home / "state", server.url)
            async with account_client(server.url) as client:
                with pytest.raises(Unreachable, match=f"over the {MAX_TOKEN_CHARS} a token may"):
                    await maybe_rotate(store, client, label="laptop")
            assert stored_token(store) == OLD

    asyncio.run(go())


def test_login_local_refuses_an_overlong_token_and_stores_nothing(
    isolated_home: Path, lobu: Lobu, captured: Captured
) -> None:
    settings = make_settings(isolated_home, worker_id=WORKER)
    lobu.router.post("/api/local-init").respond(
        200, json={"device_token": OVERLONG, "organization": {"slug": "me"}}
    )
    mint = lobu.mint()
    code = login(settings, options(local=True), console=captured.console, wiring=lobu.wiring())
    assert code == ExitCode.UNREACHABLE
    assert "nothing was stored" in captured.err.getvalue()
    assert mint.call_count == 0
    assert TokenStore(settings.paths.state_dir, SERVER).load() is None


def test_a_token_too_long_is_never_written_to_the_store(tmp_path: Path) -> None:
    store = TokenStore(tmp_path, SERVER)
    with pytest.raises(Exception, match="refused to store a token"):
        store.save(Credential(token=OVERLONG, kind=CHILD, worker_id=WORKER))
    assert store.load() is None
    assert not (tmp_path / "token.json").exists()


# ------------------------------------------------------------------ the lock


@contextlib.contextmanager
def lock_held_elsewhere(state_dir: Path) -> Iterator[None]:
    """The token lock, held the way another process of the agent holds it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        os.close(fd)


QUICK = {"account_timeout_seconds": 0.2}  # each request's deadline; the lock's wait follows


def test_logout_does_not_wait_for_the_token_lock_forever(
    isolated_home: Path, lobu: Lobu, captured: Captured
) -> None:
    settings = make_settings(isolated_home, worker_id=WORKER, **QUICK)
    store = due_store(settings.paths.state_dir, SERVER)
    with lock_held_elsewhere(settings.paths.state_dir):
        started = time.monotonic()
        code = logout(settings, options(), console=captured.console, wiring=lobu.wiring())
    assert time.monotonic() - started < 10
    assert code == ExitCode.UNREACHABLE
    assert "another device-agent process held" in captured.err.getvalue()
    assert stored_token(store) == OLD  # nothing half done


def test_login_does_not_wait_for_the_token_lock_forever(
    isolated_home: Path, lobu: Lobu, captured: Captured
) -> None:
    settings = make_settings(isolated_home, worker_id=WORKER, **QUICK)
    lobu.router.get("/api/me/devices").respond(200, json={"devices": []})
    with lock_held_elsewhere(settings.paths.state_dir):
        code = login(
            settings,
            options(token_stdin=True),
            console=captured.console,
            stdin=io.StringIO(OLD + "\n"),
            wiring=lobu.wiring(),
        )
    assert code == ExitCode.UNREACHABLE
    assert "another device-agent process held" in captured.err.getvalue()
    assert TokenStore(settings.paths.state_dir, SERVER).load() is None


def test_trigger_does_not_wait_for_the_token_lock_forever(
    isolated_home: Path, lobu: Lobu, captured: Captured
) -> None:
    settings = make_settings(isolated_home, worker_id=WORKER, **QUICK)
    due_store(settings.paths.state_dir, SERVER)  # trigger rotates a due token first
    with lock_held_elsewhere(settings.paths.state_dir):
        code = run_now(
            settings, options(item_id="42"), console=captured.console, wiring=lobu.wiring()
        )
    assert code == ExitCode.UNREACHABLE
    assert "another device-agent process held" in captured.err.getvalue()


def test_a_cancelled_wait_for_the_token_lock_leaves_nothing_held(tmp_path: Path) -> None:
    """A stop while waiting for the lock: nothing may take it later behind our back."""

    async def take(entered: asyncio.Event) -> None:
        async with rotation_lock(tmp_path, wait=60):
            entered.set()

    async def go() -> None:
        entered = asyncio.Event()
        with lock_held_elsewhere(tmp_path):
            waiting = asyncio.create_task(take(entered))
            for _ in range(3):  # let it try, and find the lock taken
                await asyncio.sleep(0)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        assert not entered.is_set()
        async with rotation_lock(tmp_path, wait=1):  # free at once for the next one
            pass

    asyncio.run(go())
