"""Where the token lives: the OS keyring (service "device-agent", user = server URL).

`DEVICE_AGENT_TOKEN` overrides the keyring for headless machines and CI. The
token is never written to a config file, a log line or a child's argv.
Keyring calls can block (D-Bus, a macOS keychain prompt), so the agent makes
them off the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Final

import keyring
import keyring.errors

from device_agent import logs
from device_agent.settings import ENV_TOKEN, Settings
from device_agent.tokens import TokenSource

KEYRING_SERVICE: Final = "device-agent"


class CredentialError(Exception):
    """No usable token, or the keyring failed; the message says what to do."""


def _keyring_problem(exc: Exception) -> CredentialError:
    return CredentialError(
        f"the OS keyring is not usable here ({type(exc).__name__}: {exc}); on a headless machine "
        f"set {ENV_TOKEN} in the service's environment instead"
    )


def read_keyring(server: str) -> str | None:
    try:
        return keyring.get_password(KEYRING_SERVICE, server)
    except keyring.errors.KeyringError as exc:
        raise _keyring_problem(exc) from None


def store_token(server: str, token: str) -> None:
    check_token_shape(token)
    try:
        keyring.set_password(KEYRING_SERVICE, server, token)
    except keyring.errors.KeyringError as exc:
        raise _keyring_problem(exc) from None


def delete_token(server: str) -> bool:
    try:
        keyring.delete_password(KEYRING_SERVICE, server)
    except keyring.errors.PasswordDeleteError:
        return False
    except keyring.errors.KeyringError as exc:
        raise _keyring_problem(exc) from None
    return True


def check_token_shape(token: str) -> None:
    """A token goes into an HTTP header: printable ASCII, no spaces."""
    if len(token) < 8 or not all("!" <= ch <= "~" for ch in token):
        raise CredentialError(
            "that does not look like a token (too short, or with spaces or non-ASCII "
            "characters): paste the owl_pat_… token exactly"
        )


def resolve_token(settings: Settings) -> str:
    """The token to use: DEVICE_AGENT_TOKEN, else the keyring entry for this server."""
    if settings.token:
        check_token_shape(settings.token)
        return settings.token
    token = read_keyring(settings.origin)
    if not token:
        raise CredentialError(
            f"no token for {settings.origin}: run `device-agent login --server {settings.origin}` "
            f"or set {ENV_TOKEN}"
        )
    check_token_shape(token)
    return token


class Tokens(TokenSource):
    """The token in use; after a 401 it re-reads the keyring, in case the user logged in again."""

    def __init__(self, settings: Settings, token: str) -> None:
        self._settings = settings
        self._token = token

    def current(self) -> str:
        return self._token

    async def refresh(self) -> bool:
        if self._settings.token:  # fixed by the environment: nothing else to try
            return False
        try:
            stored = await asyncio.to_thread(read_keyring, self._settings.origin)
        except CredentialError:
            return False
        if stored and stored != self._token:
            logs.redactor.add(stored)
            self._token = stored
            return True
        return False
