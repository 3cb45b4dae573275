from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from device_agent.config import Settings, load
from device_agent.identity.credentials import (
    CredentialError,
    check_token_shape,
    resolve_token,
    store_token,
)
from device_agent.identity.tokens import Tokens

SERVER = "https://lobu.example.com"


def settings(home: Path, **env: str) -> Settings:
    return load(env={"DEVICE_AGENT_HOME": str(home), **env}, overrides={"server": SERVER})


def store(home: Path, token: str) -> None:
    store_token(SERVER, token, state_dir=settings(home).paths.state_dir)


def test_env_token_wins_over_the_stored_one(isolated_home: Path) -> None:
    store(isolated_home, "owl_pat_from_store")
    chosen = settings(isolated_home, DEVICE_AGENT_TOKEN="owl_pat_from_env")
    assert resolve_token(chosen) == "owl_pat_from_env"


def test_missing_token_says_how_to_log_in(isolated_home: Path) -> None:
    with pytest.raises(CredentialError, match=f"device-agent login --server {SERVER}"):
        resolve_token(settings(isolated_home))


@pytest.mark.parametrize("token", ["", "short", "owl_pat_ with space"])
def test_token_shape_is_checked(token: str) -> None:
    with pytest.raises(CredentialError):
        check_token_shape(token)


def test_refresh_picks_up_a_new_login(isolated_home: Path) -> None:
    store(isolated_home, "owl_pat_old_old_old")
    tokens = Tokens(settings(isolated_home), "owl_pat_old_old_old")
    assert asyncio.run(tokens.refresh()) is False  # nothing new: do not retry at once
    store(isolated_home, "owl_pat_new_new_new")
    assert asyncio.run(tokens.refresh()) is True
    assert tokens.current() == "owl_pat_new_new_new"


def test_env_token_is_never_refreshed(isolated_home: Path) -> None:
    store(isolated_home, "owl_pat_other_token")
    chosen = settings(isolated_home, DEVICE_AGENT_TOKEN="owl_pat_env_token")
    assert asyncio.run(Tokens(chosen, "owl_pat_env_token").refresh()) is False


def test_non_ascii_token_is_refused_before_any_request(isolated_home: Path) -> None:
    with pytest.raises(CredentialError, match="non-ASCII"):
        resolve_token(settings(isolated_home, DEVICE_AGENT_TOKEN="owl_pat_café_café_café"))
