"""No token (OAuth, local-init, child, rotated) reaches output, logs, errors, status or files."""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from device_agent import logs
from device_agent.config import Settings
from device_agent.identity import commands
from device_agent.identity.device_token import maybe_rotate, mint_child_token
from device_agent.identity.errors import AccountError
from device_agent.identity.http import account_client
from device_agent.identity.store import DAY, TokenStore

from .conftest import (
    LOCAL_PAT,
    REFRESH_TOKEN,
    REPO,
    SERVER,
    USER_TOKEN,
    Captured,
    Lobu,
    approved,
    child_token,
    options,
    pending,
)

SECRETS = [USER_TOKEN, REFRESH_TOKEN, LOCAL_PAT, "device-code-secret", "session-secret-xyz"]


@pytest.fixture
def log_capture(settings: Settings) -> Iterator[tuple[Path, io.StringIO]]:
    stream = io.StringIO()
    log_file = settings.paths.log_dir / "device-agent.log"
    logs.setup(log_file=log_file, console_level=logging.DEBUG, console_stream=stream)
    for name in ("httpx", "httpcore"):  # the noisiest place a header could surface
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield log_file, stream
    logging.getLogger().handlers.clear()


def secrets(lobu: Lobu) -> list[str]:
    return [*SECRETS, *lobu.minted]


def assert_absent(text: str, lobu: Lobu) -> None:
    leaked = [s for s in secrets(lobu) if s in text]
    assert leaked == [], f"leaked: {leaked}"


@pytest.mark.usefixtures("no_keyring")
def test_login_rotation_trigger_and_logout_leave_no_token_in_output_logs_or_files(
    settings: Settings,
    lobu: Lobu,
    captured: Captured,
    log_capture: tuple[Path, io.StringIO],
    isolated_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lobu.oauth(pending(), approved())
    lobu.mint()
    assert commands.login(settings, options(), console=captured.console, wiring=lobu.wiring()) == 0

    # rotation, as the daemon does it while idle, then "Run now" with the rotated token
    store = TokenStore(settings.paths.state_dir, SERVER)

    first = store.load()
    assert first is not None
    assert first.expires_at is not None

    async def rotate() -> None:
        async with account_client(SERVER) as client:
            await maybe_rotate(store, client, label="laptop", now=first.expires_at - 10 * DAY)

    asyncio.run(rotate())
    assert lobu.minted == [child_token(1), child_token(2)]
    lobu.router.post("/api/workers/me/watchers/4/trigger").respond(
        200, json={"run_id": 9, "status": "pending", "already_queued": False, "queued_at": "x"}
    )
    trigger_options = options(item_id="4")
    assert (
        commands.run_now(settings, trigger_options, console=captured.console, wiring=lobu.wiring())
        == 0
    )

    # status --json reads only the state dir: run it as a user would
    status = subprocess.run(
        [sys.executable, "-m", "device_agent", "status", "--json"],
        env={"DEVICE_AGENT_HOME": str(isolated_home), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr

    # every file but the token's own home is clean
    token_file = settings.paths.state_dir / "token.json"
    for path in isolated_home.rglob("*"):
        if path.is_file() and path != token_file:
            assert_absent(path.read_text(errors="replace"), lobu)

    lobu.router.get("/.well-known/oauth-authorization-server").respond(500)
    assert commands.logout(settings, options(), console=captured.console, wiring=lobu.wiring()) == 0

    log_file, stream = log_capture
    for text in (
        captured.text,
        status.stdout + status.stderr,
        stream.getvalue(),
        log_file.read_text(),
    ):
        assert_absent(text, lobu)
    assert "Revoked" not in captured.out.getvalue()


def mint_failure(bearer: str) -> AccountError:
    async def go() -> None:
        async with account_client(SERVER) as client:
            await mint_child_token(client, bearer, worker_id="w", label="l")

    with pytest.raises(AccountError) as info:
        asyncio.run(go())
    return info.value


def test_a_server_that_echoes_the_token_does_not_put_it_in_the_error(lobu: Lobu) -> None:
    echoed = f"token {LOCAL_PAT} is not allowed to mint"
    lobu.router.post("/api/me/devices/mint-child-token").respond(
        403, json={"error": "insufficient_scope", "error_description": echoed}
    )
    error = mint_failure(LOCAL_PAT)
    assert LOCAL_PAT not in str(error)
    assert "[REDACTED]" in str(error)


def test_an_unreachable_server_error_never_carries_the_bearer(lobu: Lobu) -> None:
    lobu.router.post("/api/me/devices/mint-child-token").mock(
        side_effect=httpx.ConnectError(f"failed with Authorization: Bearer {USER_TOKEN}")
    )
    error = mint_failure(USER_TOKEN)
    assert USER_TOKEN not in str(error)
    assert error.__cause__ is None
    assert error.__suppress_context__  # the transport's message (and traceback) is dropped
