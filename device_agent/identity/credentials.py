"""The token the agent uses: DEVICE_AGENT_TOKEN, else the stored one (keyring or 0600 file).

Where a token is stored is `identity.store`; how one is obtained, the rest of `identity`;
the token the running agent holds and renews, `identity.tokens`. The token is never written
to a config file, a log line or a child's argv: each one read is added to the process's
`redaction.redactor`. Keyring calls can block (D-Bus, a macOS keychain prompt), so the agent
makes them off the event loop; `status` reads what `login` recorded instead (`token_status`).
"""

from __future__ import annotations

import os
from pathlib import Path

from device_agent.config import ENV_TOKEN, Paths, Settings
from device_agent.errors import DeviceAgentError, ExitCode
from device_agent.identity.store import (
    KEYRING_SERVICE,
    PAT,
    Credential,
    StoreError,
    TokenStore,
    recorded,
    token_shape_problem,
    worker_id_mismatch,
)
from device_agent.redaction import redactor

__all__ = [
    "KEYRING_SERVICE",
    "CredentialError",
    "binding_problem",
    "check_token_shape",
    "delete_token",
    "describe_token_home",
    "device_platform",
    "load_credential",
    "read_token",
    "resolve_token",
    "store_token",
    "stored_credential",
    "token_problem",
    "token_status",
    "token_store",
]


class CredentialError(DeviceAgentError):
    """No usable token; the message says what to do."""

    exit_code = ExitCode.AUTH
    prefix = "authentication needed: "


def token_store(settings: Settings) -> TokenStore:
    return TokenStore(settings.paths.state_dir, settings.origin)


def _default_store(server: str, state_dir: Path | None) -> TokenStore:
    return TokenStore(state_dir or Paths.resolve(os.environ).state_dir, server)


def store_token(server: str, token: str, *, state_dir: Path | None = None) -> str:
    """Keep a pasted token (binding unknown); return where it went."""
    check_token_shape(token)
    redactor.add(token)
    try:
        return _default_store(server, state_dir).save(Credential(token=token, kind=PAT))
    except StoreError as exc:
        raise CredentialError(str(exc)) from None


def delete_token(server: str, *, state_dir: Path | None = None) -> bool:
    """Remove every stored copy; True when there was one."""
    try:
        return bool(_default_store(server, state_dir).remove())
    except StoreError as exc:
        raise CredentialError(str(exc)) from None


def check_token_shape(token: str) -> None:
    """A token goes into an HTTP header: printable ASCII, no spaces, not too long."""
    problem = token_shape_problem(token)
    if problem is not None:
        raise CredentialError(
            f"that does not look like a token ({problem}): paste the owl_pat_… token exactly"
        )


def load_credential(settings: Settings) -> Credential | None:
    """The token to use and what is known about it; DEVICE_AGENT_TOKEN wins."""
    if settings.token:
        return Credential(token=settings.token, kind=PAT)
    try:
        return token_store(settings).load()
    except StoreError as exc:
        raise CredentialError(str(exc)) from None


def read_token(settings: Settings) -> str | None:
    credential = load_credential(settings)
    return credential.token if credential else None


def resolve_token(settings: Settings) -> str:
    """The token to use: DEVICE_AGENT_TOKEN, else the stored one for this server."""
    credential = load_credential(settings)
    if credential is None:
        raise CredentialError(
            f"no token for {settings.origin}: run `device-agent login --server {settings.origin}` "
            f"or set {ENV_TOKEN}"
        )
    if credential.refused:
        raise CredentialError(
            f"the server refused this device's token before its expiry ({credential.refused}): "
            f"log in again with `device-agent login --server {settings.origin}`"
        )
    check_token_shape(credential.token)
    redactor.add(credential.token)
    return credential.token


def describe_token_home(settings: Settings) -> str:
    """Where the token comes from, for login, status and doctor."""
    if settings.token:
        return f"{ENV_TOKEN} (environment)"
    return token_store(settings).describe()


def token_status(settings: Settings) -> tuple[str | None, str | None]:
    """Where the token is and what is wrong with it, for `status`: from what `login` recorded in
    the state dir, so `status` never opens the keyring (slow to find, and it may ask the owner
    for access). `doctor` reads the token itself."""
    if settings.token:
        return f"{ENV_TOKEN} (environment)", None
    try:
        about = recorded(settings.paths.state_dir, settings.origin)
    except StoreError as exc:
        return None, str(exc)
    if about is None:
        return None, "no token: run `device-agent login`"
    if about.home is None:  # saved before the home was recorded: ask the store itself
        return describe_token_home(settings), token_problem(settings)
    return about.home, f"log in again: {about.refused}" if about.refused else None


def stored_credential(settings: Settings) -> Credential | None:
    """The credential as stored, for what `device_platform` and `binding_problem` read from
    it; None with a DEVICE_AGENT_TOKEN or nothing readable. Reads the store, which may
    block: call it off the event loop."""
    try:
        return load_credential(settings)
    except CredentialError:
        return None


def device_platform(credential: Credential | None) -> str | None:
    """The platform this device's row was minted with, to poll with (docs/protocol.md,
    "Identities"); None for a pasted or environment token, whose device row the poll creates."""
    return credential.platform if credential is not None and credential.bound else None


def binding_problem(credential: Credential | None, worker_id: str) -> str | None:
    """Why the credential cannot poll as `worker_id` (it is bound to another), or None.

    The server would answer 403 `worker_id_mismatch` (docs/protocol.md, "Authentication and
    login"); saying so before the first poll names the fix."""
    if credential is None or not credential.bound or credential.worker_id == worker_id:
        return None
    return worker_id_mismatch(credential.worker_id or "", worker_id)


def token_problem(settings: Settings) -> str | None:
    """Why the stored token cannot be used (for status), or None."""
    credential = load_credential(settings)
    if credential is None:
        return "no token: run `device-agent login`"
    if credential.refused:
        return f"log in again: {credential.refused}"
    return None
