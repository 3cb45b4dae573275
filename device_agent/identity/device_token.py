"""The durable device credential: a child token bound to this device's worker_id, and its rotation.

See docs/protocol.md, "Authentication and login". A user token (from the device flow, or from
`local-init` on a local single-user server) mints a child PAT bound to our worker_id; only the
child is kept. When fewer than 30 days remain, the child re-mints itself, which revokes the old
one — so the new token is stored before it is used, under a lock every process of the agent takes.
The lock is waited for with a deadline, and whoever holds it makes only requests that have one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Final

import httpx

from device_agent import logs
from device_agent.cli.output import printable
from device_agent.identity.errors import AuthRefused, Unreachable, UsageError
from device_agent.identity.http import (
    CLIENT_HEADER,
    body_of,
    client_name_of,
    deadline_of,
    error_text,
    fail,
    send,
    text_field,
)
from device_agent.identity.store import (
    CHILD,
    DAY,
    ROTATE_WHEN_LEFT,
    Credential,
    TokenStore,
    needs_rotation,
    token_shape_problem,
)
from device_agent.server.protocol import WORKER_ID_PATTERN

CHILD_LIFETIME: Final = 90 * DAY  # what the server grants when its answer omits expires_at
LOCK_FILE: Final = "token.lock"
LOCK_POLL_SECONDS: Final = 0.05
# The most a holder of the lock sends while holding it (logout: discovery, revocation and a
# check), each request within its deadline: a waiter gives up after that many deadlines.
LOCK_HELD_REQUESTS: Final = 4
# Every server version mints child tokens for "headless" (older ones refuse "macos"), and a
# terminal daemon is a headless device on any host. The device row keeps this platform, so the
# agent must poll with it (docs/protocol.md, "Identities").
MINT_PLATFORM: Final = "headless"


# What a server answers when it mints child tokens for other platforms only: Lobu 1.6.0 lets
# only its browser extension ("chrome-extension") mint (docs/protocol.md, "What a real server
# does").
NOT_ELIGIBLE: Final = "is not eligible for child-token mint"


class MintNotOffered(UsageError):
    """The server issues no device-bound token to this agent, whatever it is asked."""

    def __init__(self, said: str) -> None:
        super().__init__(
            f"the server issues no token bound to this device ({said!r}: it mints those only "
            "for other kinds of clients). On a local server, `device-agent login --local` "
            "keeps the local server's own token instead; otherwise sign in with a token from "
            "the web app (`device-agent login --token-stdin`)",
            status=400,
        )
        self.said = said


@dataclass(frozen=True)
class LocalInit:
    token: str = field(repr=False)
    org_slug: str | None


async def local_init(client: httpx.AsyncClient) -> LocalInit:
    """One call to a local single-user server; each call mints another PAT, so call it once."""
    response = await send(
        client, "POST", "/api/local-init", json={}, headers={CLIENT_HEADER: client_name_of(client)}
    )
    if response.status_code != 200:
        raise fail(
            response,
            "signing in to the local server",
            fix="`--local` works only with a local single-user Lobu server; "
            "otherwise run `device-agent login` without it",
        )
    body = body_of(response)
    token = _token_in(body, "device_token", "signing in to the local server")
    logs.redactor.add(token)
    org = body.get("organization")
    slug = org.get("slug") if isinstance(org, dict) else None
    return LocalInit(token=token, org_slug=slug if isinstance(slug, str) else None)


async def mint_child_token(
    client: httpx.AsyncClient,
    bearer: str,
    *,
    worker_id: str,
    label: str,
    now: float | None = None,
) -> Credential:
    """Mint (or, with a child token as bearer, re-mint) the token bound to `worker_id`."""
    doing = "minting this device's token"
    response = await send(
        client,
        "POST",
        "/api/me/devices/mint-child-token",
        bearer=bearer,
        json={"platform": MINT_PLATFORM, "worker_id": worker_id, "label": label},
        headers={CLIENT_HEADER: client_name_of(client)},
    )
    if response.status_code != 200:
        said = error_text(response)
        if response.status_code == 400 and NOT_ELIGIBLE in said:
            raise MintNotOffered(said)
        raise fail(response, doing, fix=_mint_fix(body_of(response).get("error")))
    body = body_of(response)
    token = _token_in(body, "access_token", doing)
    logs.redactor.add(token)
    if not token.startswith("owl_pat_"):
        raise Unreachable(f"{doing}: the server returned something that is not a device token")
    issued = time.time() if now is None else now
    return Credential(
        token=token,
        kind=CHILD,
        worker_id=_bound_worker_id(body, doing),
        platform=MINT_PLATFORM,
        expires_at=_parse_expiry(body.get("expires_at")) or issued + CHILD_LIFETIME,
    )


def _bound_worker_id(body: dict[str, object], doing: str) -> str:
    """The worker_id the server bound the token to, if the agent can be that device: it goes
    into the state dir and the config file, and one the agent would refuse to start with (a
    line break, a `/`) must not be kept there."""
    worker_id = text_field(body, "worker_id", doing)
    if not WORKER_ID_PATTERN.fullmatch(worker_id):
        raise Unreachable(
            f"{doing}: the server bound the token to worker_id {printable(worker_id[:200])!r}, "
            "which is not a valid worker_id (1-128 characters from letters, digits and "
            ". _ : -); nothing was stored. Is this a Lobu server? Check the server URL, or "
            "sign in with a token from the web app (`device-agent login --token-stdin`)"
        )
    return worker_id


def _token_in(body: dict[str, object], key: str, doing: str) -> str:
    """The token the server sent, if it could be one: a broken or hostile server's 200 MB
    "token" is refused here, before it is stored or even remembered for redaction."""
    token = text_field(body, key, doing)
    problem = token_shape_problem(token)
    if problem is not None:
        raise Unreachable(
            f"{doing}: the server sent a token that is {problem}; nothing was stored. "
            "Is this a Lobu server? Check the server URL"
        )
    return token


def _mint_fix(error: object) -> str:
    if error == "insufficient_scope":
        return (
            "this token may not mint device tokens (it lacks device_worker:run, or belongs to an "
            "MCP client): run `device-agent login` to sign in with the device flow"
        )
    if error == "personal_org_missing":
        return "your account has no personal workspace yet: sign in to the web app once, then retry"
    return "run `device-agent login` again"


def _parse_expiry(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class LockBusy(Unreachable):
    """Another process held the token lock past the wait: try again later."""


def lock_wait_for(deadline: float) -> float:
    """How long to wait for the token lock, given the deadline of each account request:
    longer than its holder may keep it, however slow the server."""
    return LOCK_HELD_REQUESTS * deadline


@contextlib.asynccontextmanager
async def rotation_lock(state_dir: Path, *, wait: float) -> AsyncIterator[None]:
    """An exclusive flock on a file in the state dir, shared by the daemon, `login`, `logout`,
    `trigger` and the tray; the OS drops it if the holder dies.

    Asked for without blocking every `LOCK_POLL_SECONDS`, for at most `wait` seconds (then
    `LockBusy`): a wait is never stuck in a thread, and a stop cancels it at once."""
    path = state_dir / LOCK_FILE
    fd = _open_lock_file(path)
    try:
        async with asyncio.timeout(wait):
            # Another process holds it: no event of ours says when it lets go, so ask again.
            while not _try_lock(fd):  # noqa: ASYNC110
                await asyncio.sleep(LOCK_POLL_SECONDS)
    except TimeoutError:
        os.close(fd)
        raise LockBusy(
            f"another device-agent process held {path} for over {wait:g} s while changing "
            "this device's token; try again in a minute"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    try:
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _open_lock_file(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


async def maybe_rotate(
    store: TokenStore,
    client: httpx.AsyncClient,
    *,
    label: str,
    now: float | None = None,
    threshold: float = ROTATE_WHEN_LEFT,
    lock_wait: float | None = None,
) -> Credential | None:
    """Re-mint the child token when fewer than `threshold` seconds (30 days) remain; return the
    credential to use.

    Call at start and while idle. Under the lock the store is read again, so when another process
    rotated meanwhile its token is used and no second mint revokes it. A child token refused with
    401 before its expiry is not replaced: it is marked so status can say "log in again", and
    `AuthRefused` is raised. The lock is waited for `lock_wait` seconds at most (default:
    `lock_wait_for` the client's deadline), then `LockBusy`.
    """
    wait = lock_wait_for(deadline_of(client)) if lock_wait is None else lock_wait
    async with rotation_lock(store.state_dir, wait=wait):
        current = await asyncio.to_thread(store.load)
        moment = time.time() if now is None else now
        if (
            current is None
            or current.worker_id is None
            or not needs_rotation(current, moment, threshold)
        ):
            return current
        logs.redactor.add(current.token)
        try:
            fresh = await mint_child_token(
                client, current.token, worker_id=current.worker_id, label=label, now=moment
            )
        except AuthRefused as exc:
            await asyncio.to_thread(store.mark_refused, "refused by the server while rotating")
            raise AuthRefused(
                f"the server refused this device's token before its expiry ({exc}); "
                "it was not replaced: run `device-agent login` again"
            ) from None
        fresh = replace(fresh, org_slug=current.org_slug)
        await asyncio.to_thread(store.save, fresh)  # stored before anyone uses it
        return fresh
