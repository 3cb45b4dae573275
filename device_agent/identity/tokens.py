"""The token the running agent holds (`Tokens`): the one it polls with, re-read from the
store after a 401 (a new login, a rotation by another process), and re-minted before its
expiry (`rotate_if_due`). The poll loop and the pipeline see it as a `TokenSource`.

Reading the store can block (the keyring), so it is done off the event loop. Every token
taken up is added to `redaction.redactor` before it is used.
"""

from __future__ import annotations

import asyncio
import time

from device_agent.config import Settings
from device_agent.identity.credentials import CredentialError, load_credential, token_store
from device_agent.identity.device_token import maybe_rotate
from device_agent.identity.errors import Unreachable
from device_agent.identity.http import account_client_for
from device_agent.identity.store import DAY, Credential, TokenStore, needs_rotation
from device_agent.logs import get_logger
from device_agent.redaction import redactor

_log = get_logger(__name__)


class TokenSource:
    """What the poll loop and the pipeline need of credentials: the token now, and a way to get
    a fresh one. `Tokens` is the agent's; tests give a fixed token."""

    def current(self) -> str:
        raise NotImplementedError

    async def refresh(self) -> bool:
        """Try to obtain a new token after a 401. True if there is one to try."""
        return False


class Tokens(TokenSource):
    """The token in use. After a 401 it re-reads the store, in case of a new login or rotation;
    `rotate_if_due` re-mints a child token close to its expiry (at start and while idle)."""

    def __init__(self, settings: Settings, token: str) -> None:
        self._settings = settings
        self._token = token

    def current(self) -> str:
        return self._token

    async def refresh(self) -> bool:
        if self._settings.token:  # fixed by the environment: nothing else to try
            return False
        try:
            stored = await asyncio.to_thread(load_credential, self._settings)
        except CredentialError:
            return False
        if stored and stored.token != self._token:
            redactor.add(stored.token)
            self._token = stored.token
            return True
        if stored and stored.bound and (stored.expires_at or 0) > time.time():
            # A child token refused before its expiry is not replaced behind the user's back.
            await asyncio.to_thread(
                token_store(self._settings).mark_refused, "refused by the server (401)"
            )
        return False

    async def rotate_if_due(self) -> None:
        """Re-mint a child token with fewer than 30 days left; the new one is stored first.
        A token another process stored meanwhile (a rotation, a new login) is taken up.

        Raises `AuthRefused` when the server refused the token (the user must log in again);
        an unreachable server keeps the current token and is retried at the next call.
        """
        if self._settings.token:
            return
        threshold = self._settings.rotate_days_left * DAY
        store = token_store(self._settings)
        credential = await asyncio.to_thread(store.load)
        if credential is not None and needs_rotation(credential, time.time(), threshold):
            try:
                credential = await self._rotate(store, threshold)
            except Unreachable as exc:
                _log.warning("token rotation postponed", reason=str(exc))
                return
        if credential is not None and credential.token != self._token:
            redactor.add(credential.token)
            self._token = credential.token

    async def _rotate(self, store: TokenStore, threshold: float) -> Credential | None:
        async with account_client_for(self._settings) as client:
            return await maybe_rotate(
                store, client, label=self._settings.label, threshold=threshold
            )
