"""Fixtures for the auth tests: a respx-mocked Lobu server answering as docs/protocol.md says."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import keyring.core
import pytest
import respx

from device_agent.config import Settings, load
from device_agent.identity.commands import Console, Wiring

SERVER = "https://lobu.test"
WORKER = "headless:laptop-1"
USER_TOKEN = "oauth_access_" + "u" * 24
REFRESH_TOKEN = "oauth_refresh_" + "r" * 24
LOCAL_PAT = "owl_pat_" + "L" * 32
REPO = Path(__file__).resolve().parents[2]
INVALID_TOKEN = {"error": "invalid_token", "error_description": "Invalid or expired access token"}


def child_token(n: int) -> str:
    return f"owl_pat_child{n:03d}" + "c" * 24


@pytest.fixture(autouse=True)
def fresh_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """keyring picks its backend once per process, from PYTHON_KEYRING_BACKEND: pick again."""
    forget_keyring(monkeypatch)


def forget_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)


@pytest.fixture
def file_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A usable keyring backend whose contents a test can read (tests/integration/file_keyring)."""
    path = tmp_path / "keyring.json"
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.integration.file_keyring.FileKeyring")
    monkeypatch.setenv("TEST_KEYRING_FILE", str(path))
    return path


@pytest.fixture
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """A headless box: keyring falls back to its fail backend."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")


def make_settings(home: Path, **overrides: Any) -> Settings:
    return load(
        env={"DEVICE_AGENT_HOME": str(home)},
        overrides={"server": SERVER, "label": "laptop", **overrides},
    )


@pytest.fixture
def settings(isolated_home: Path) -> Settings:
    return make_settings(isolated_home, worker_id=WORKER)


@dataclass
class Lobu:
    """The answers of a Lobu server, with the state the tests look at."""

    router: respx.MockRouter
    minted: list[str] = field(default_factory=list)
    mint_bearers: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    sleeps: list[float] = field(default_factory=list)
    now: float = 0.0
    bound_worker_id: str | None = None  # None: bind to whatever worker_id was asked for

    def oauth(
        self,
        *token_answers: httpx.Response,
        revocation: bool = False,
        interval: float = 5,
        expires_in: float = 900,
        **device_code: object,
    ) -> None:
        """The OAuth endpoints; `device_code` replaces fields of the device code answer."""
        meta = {
            "issuer": SERVER,
            "registration_endpoint": f"{SERVER}/oauth/register",
            "device_authorization_endpoint": f"{SERVER}/oauth/device_authorization",
            "token_endpoint": f"{SERVER}/oauth/token",
        }
        if revocation:
            meta["revocation_endpoint"] = f"{SERVER}/oauth/revoke"
        self.router.get("/.well-known/oauth-authorization-server").respond(200, json=meta)
        self.router.post("/oauth/register").respond(201, json={"client_id": "client-1"})
        self.router.post("/oauth/device_authorization").respond(
            200,
            json={
                "device_code": "device-code-secret",
                "user_code": "WDJB-MJHT",
                "verification_uri": f"{SERVER}/device",
                "verification_uri_complete": f"{SERVER}/device?user_code=WDJB-MJHT",
                "expires_in": expires_in,
                "interval": interval,
            }
            | device_code,
        )
        self.router.post("/oauth/token").mock(side_effect=list(token_answers))

    def mint(self) -> respx.Route:
        def answer(request: httpx.Request) -> httpx.Response:
            bearer = request.headers["authorization"].removeprefix("Bearer ")
            if bearer in self.revoked:
                return httpx.Response(401, json=INVALID_TOKEN)
            self.mint_bearers.append(bearer)
            body = json.loads(request.content)
            worker_id = self.bound_worker_id or body["worker_id"]
            self.revoked.update(self.minted)  # re-minting an id revokes every older child
            token = child_token(len(self.minted) + 1)
            self.minted.append(token)
            return httpx.Response(
                200,
                json={
                    "worker_id": worker_id,
                    "access_token": token,
                    "expires_at": "2027-03-01T00:00:00.000Z",
                    "label": body.get("label"),
                    "platform": body["platform"],
                    "gateway_url": SERVER,
                },
            )

        return self.router.post("/api/me/devices/mint-child-token").mock(side_effect=answer)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now

    def wiring(self, **kw: Any) -> Wiring:
        opened: list[str] = kw.pop("opened", [])
        return Wiring(
            sleep=self.sleep,
            clock=self.clock,
            open_browser=opened.append,
            env=kw.pop("env", {}),
            system=kw.pop("system", "linux"),
        )


@pytest.fixture
def lobu() -> Iterator[Lobu]:
    with respx.mock(base_url=SERVER, assert_all_called=False) as router:
        yield Lobu(router)


def pending() -> httpx.Response:
    return httpx.Response(400, json={"error": "authorization_pending"})


def approved() -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "access_token": USER_TOKEN,
            "token_type": "Bearer",
            "expires_in": 86400,
            "refresh_token": REFRESH_TOKEN,
            "scope": "device_worker:run mcp:read mcp:write profile:read",
        },
    )


def oauth_error(error: str) -> httpx.Response:
    return httpx.Response(400, json={"error": error})


@dataclass
class Captured:
    console: Console
    out: io.StringIO
    err: io.StringIO

    @property
    def text(self) -> str:
        return self.out.getvalue() + self.err.getvalue()


@pytest.fixture
def captured() -> Captured:
    out, err = io.StringIO(), io.StringIO()
    return Captured(Console(out=out, err=err), out, err)


def options(**values: Any) -> argparse.Namespace:
    defaults = {"local": False, "token_stdin": False, "no_browser": False, "lane": "watcher"}
    return argparse.Namespace(**{**defaults, **values})
