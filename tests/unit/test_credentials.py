from __future__ import annotations

import asyncio

import pytest

from device_agent import credentials
from device_agent.credentials import CredentialError, Tokens, check_token_shape, resolve_token
from device_agent.settings import load

SERVER = "https://lobu.example.com"


def test_env_token_wins_over_the_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credentials, "read_keyring", lambda server: "owl_pat_from_keyring")
    settings = load(env={"DEVICE_AGENT_TOKEN": "owl_pat_from_env"}, overrides={"server": SERVER})
    assert resolve_token(settings) == "owl_pat_from_env"


def test_missing_token_says_how_to_log_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credentials, "read_keyring", lambda server: None)
    with pytest.raises(CredentialError, match=f"device-agent login --server {SERVER}"):
        resolve_token(load(env={}, overrides={"server": SERVER}))


@pytest.mark.parametrize("token", ["", "short", "owl_pat_ with space"])
def test_token_shape_is_checked(token: str) -> None:
    with pytest.raises(CredentialError):
        check_token_shape(token)


def test_refresh_picks_up_a_new_login(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = {"token": "owl_pat_old_old_old"}
    monkeypatch.setattr(credentials, "read_keyring", lambda server: stored["token"])
    tokens = Tokens(load(env={}, overrides={"server": SERVER}), "owl_pat_old_old_old")
    assert asyncio.run(tokens.refresh()) is False  # nothing new: do not retry at once
    stored["token"] = "owl_pat_new_new_new"
    assert asyncio.run(tokens.refresh()) is True
    assert tokens.current() == "owl_pat_new_new_new"


def test_env_token_is_never_refreshed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credentials, "read_keyring", lambda server: "owl_pat_other_token")
    settings = load(env={"DEVICE_AGENT_TOKEN": "owl_pat_env_token"}, overrides={"server": SERVER})
    assert asyncio.run(Tokens(settings, "owl_pat_env_token").refresh()) is False


def test_non_ascii_token_is_refused_before_any_request() -> None:
    settings = load(
        env={"DEVICE_AGENT_TOKEN": "owl_pat_café_café_café"}, overrides={"server": SERVER}
    )
    with pytest.raises(CredentialError, match="non-ASCII"):
        resolve_token(settings)
