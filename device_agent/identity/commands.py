"""`login`, `logout` and `trigger` as functions: settings, options and streams in, exit code out.

The CLI wires these into its subcommands with `add_*_arguments(parser)` and a call; everything a
test needs to replace (the HTTP transport, the browser, sleep and clock, the poke of a running
agent) is a parameter.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import webbrowser
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import httpx

from device_agent import config_file, logs
from device_agent.cli.output import printable
from device_agent.config import (
    ENV_SERVER,
    ENV_TOKEN,
    ConfigError,
    Settings,
    config_file_in_use,
    validate_server_url,
)
from device_agent.errors import DeviceAgentError, ExitCode
from device_agent.identity import oauth
from device_agent.identity.credentials import CredentialError, check_token_shape, load_credential
from device_agent.identity.device_token import (
    LocalInit,
    MintNotOffered,
    local_init,
    lock_wait_for,
    maybe_rotate,
    mint_child_token,
    rotation_lock,
)
from device_agent.identity.errors import AccountError, UsageError
from device_agent.identity.http import account_client_for, fail, send
from device_agent.identity.run_now import trigger
from device_agent.identity.store import (
    DAY,
    LOCAL,
    PAT,
    Credential,
    TokenStore,
    worker_id_mismatch,
)
from device_agent.identity.worker_id import resolve_worker_id

Poke = Callable[[], str | None]


@dataclass
class Console:
    """Where a command writes: results to `out`, problems to `err`."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def say(self, message: str) -> None:
        print(logs.redactor(message), file=self.out, flush=True)

    def fail(self, message: str) -> None:
        print(f"device-agent: {logs.redactor(message)}", file=self.err, flush=True)


@dataclass
class Wiring:
    """What tests replace: the HTTP transport, the browser, time, and the environment."""

    transport: httpx.AsyncBaseTransport | None = None
    open_browser: Callable[[str], object] = webbrowser.open
    sleep: oauth.Sleep = asyncio.sleep
    clock: oauth.Clock = time.monotonic
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    system: str = sys.platform


# ------------------------------------------------------------------ parsers


def add_login_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--local", action="store_true", help="sign in to a local single-user Lobu server"
    )
    parser.add_argument(
        "--token-stdin", action="store_true", help="read a token (owl_pat_…) from stdin instead"
    )
    parser.add_argument(
        "--no-browser", action="store_true", help="only print the sign-in address and code"
    )


# ------------------------------------------------------------------- login


def login(
    settings: Settings,
    options: argparse.Namespace,
    *,
    console: Console | None = None,
    stdin: TextIO | None = None,
    wiring: Wiring | None = None,
) -> int:
    console, wiring = console or Console(), wiring or Wiring()
    return _run(console, _login(settings, options, console, wiring, stdin or sys.stdin))


async def _login(
    settings: Settings,
    options: argparse.Namespace,
    console: Console,
    wiring: Wiring,
    stdin: TextIO,
) -> int:
    if options.token_stdin:
        code = await _login_with_token(settings, _read_token(stdin), console, wiring)
        worker_id = None  # a pasted token's binding is unknown: nothing settled
    else:
        code, worker_id = await _login_and_mint(settings, options, console, wiring)
    config_path = getattr(options, "config", None)
    remembered = await asyncio.to_thread(
        remember_login, settings, config_path, console, worker_id=worker_id
    )
    return code if code != ExitCode.OK else remembered


def _read_token(stdin: TextIO) -> str:
    token = stdin.readline().strip()
    if not token:
        raise UsageError(
            "no token on stdin: pipe one in, e.g. `printenv LOBU_TOKEN | device-agent login "
            "--token-stdin`, or run `device-agent login` without --token-stdin to sign in"
        )
    try:
        check_token_shape(token)
    except CredentialError as exc:
        raise UsageError(str(exc)) from None
    logs.redactor.add(token)
    return token


async def _login_with_token(
    settings: Settings, token: str, console: Console, wiring: Wiring
) -> int:
    async with account_client_for(settings, transport=wiring.transport) as client:
        try:
            response = await send(client, "GET", "/api/me/devices", bearer=token)
        except AccountError as exc:
            raise type(exc)(f"{exc}; nothing was stored") from None
    if response.status_code != 200:
        raise fail(response, "checking the token", fix="nothing was stored")
    store = TokenStore(settings.paths.state_dir, settings.origin)
    async with rotation_lock(store.state_dir, wait=_lock_wait(settings)):
        where = await asyncio.to_thread(store.save, Credential(token=token, kind=PAT))
    console.say(f"Token for {settings.origin} stored in the {where}.")
    return ExitCode.OK


async def _login_and_mint(
    settings: Settings, options: argparse.Namespace, console: Console, wiring: Wiring
) -> tuple[int, str | None]:
    """Sign in and mint; the exit code and the worker_id settled (None: it was not)."""
    worker_id = resolve_worker_id(settings)
    store = TokenStore(settings.paths.state_dir, settings.origin)
    async with account_client_for(settings, transport=wiring.transport) as client:
        if options.local:
            return await _login_local(settings, client, store, worker_id, console)
        signed_in = await _device_flow(client, options, console, wiring)
        try:
            credential, where = await _mint_and_keep(
                settings, client, store, signed_in.tokens.access_token, worker_id, org_slug=None
            )
        except AccountError as exc:
            # The sign-in is of no use without a device token: end it rather than leave it.
            ended = await _end_sign_in(client, signed_in)
            raise AccountError(f"{exc.user_message()}; {ended}", ExitCode(exc.exit_code)) from None
    return _signed_in(settings, worker_id, credential, where, console)


async def _mint_and_keep(
    settings: Settings,
    client: httpx.AsyncClient,
    store: TokenStore,
    user_token: str,
    worker_id: str,
    *,
    org_slug: str | None,
) -> tuple[Credential, str]:
    """Mint this device's token with `user_token` and store it; the credential and its home."""
    async with rotation_lock(store.state_dir, wait=_lock_wait(settings)):
        minted = await mint_child_token(
            client, user_token, worker_id=worker_id, label=settings.label
        )
        credential = replace(minted, org_slug=org_slug)
        where = await asyncio.to_thread(store.save, credential)
    return credential, where


def _signed_in(
    settings: Settings, worker_id: str, credential: Credential, where: str, console: Console
) -> tuple[int, str | None]:
    until = _date(credential.expires_at)
    console.say(
        f"Signed in to {settings.origin}. This device's token (bound to worker_id "
        f"{printable(credential.worker_id or worker_id)}, valid until {until}) is stored in the "
        f"{where}."
    )
    code = _settle_worker_id(settings, worker_id, credential, console)
    return code, (credential.worker_id or worker_id) if code == ExitCode.OK else None


async def _login_local(
    settings: Settings,
    client: httpx.AsyncClient,
    store: TokenStore,
    worker_id: str,
    console: Console,
) -> tuple[int, str | None]:
    """`login --local`: the local server's token, traded for one bound to this device.

    Every `local-init` call mints a PAT that never expires, and nothing here can revoke one.
    So it is called only when no such PAT from an earlier `login --local` is kept (that one
    signs in instead), and the PAT it gives is never dropped: traded for a device-bound
    token, or, where the server mints none (Lobu 1.6.0) or the mint fails, kept and used."""
    kept = await asyncio.to_thread(store.load)
    if kept is not None and kept.kind == LOCAL and kept.refused is None:
        logs.redactor.add(kept.token)
        user, reused = LocalInit(token=kept.token, org_slug=kept.org_slug), True
    else:
        user, reused = await local_init(client), False
    while True:
        try:
            credential, where = await _mint_and_keep(
                settings, client, store, user.token, worker_id, org_slug=user.org_slug
            )
        except AccountError as exc:
            if exc.status != 401:  # the token works, the server did not mint: keep it
                return await _keep_unbound(settings, store, user, worker_id, exc, console)
            if not reused:
                raise
            user, reused = await local_init(client), False  # the stored token is dead
            continue
        return _signed_in(settings, worker_id, credential, where, console)


async def _keep_unbound(
    settings: Settings,
    store: TokenStore,
    user: LocalInit,
    worker_id: str,
    why: AccountError,
    console: Console,
) -> tuple[int, str | None]:
    """Keep the local server's token when no device-bound one was minted, and say what it can
    do. The exit code is 0 when the server mints none for this agent (this is as good as it
    gets there), else the failure's: a later `login --local` signs in with the kept token."""
    credential = Credential(token=user.token, kind=LOCAL, org_slug=user.org_slug)
    async with rotation_lock(store.state_dir, wait=_lock_wait(settings)):
        where = await asyncio.to_thread(store.save, credential)
    offered = not isinstance(why, MintNotOffered)
    reason = f"it answered {why.said!r}" if isinstance(why, MintNotOffered) else why.user_message()
    console.say(
        f"Signed in to {settings.origin} with the local server's own token, stored in the "
        f"{where}. The server did not give this device a token of its own ({reason}), so this "
        "one is not bound to this device: with it the agent polls for, runs and reports this "
        f"device's runs (as worker_id {printable(worker_id)}), and Run now "
        "works for a watcher pinned to this device; Run now for an automation does not. It "
        "does not expire: revoke it in the web app (Settings → Access tokens) when this device "
        "no longer needs it."
    )
    if offered:
        console.fail(
            "no token bound to this device yet: run `device-agent login --local` again later; "
            "it signs in with the kept token, minting no other"
        )
        return int(why.exit_code), None
    return ExitCode.OK, None


@dataclass(frozen=True)
class SignedIn:
    """A finished device flow: what the OAuth server gave, and where to revoke it."""

    endpoints: oauth.Endpoints
    client_id: str
    tokens: oauth.OAuthTokens


async def _device_flow(
    client: httpx.AsyncClient, options: argparse.Namespace, console: Console, wiring: Wiring
) -> SignedIn:
    endpoints = await oauth.discover(client)
    client_id = await oauth.register(client, endpoints)
    code = await oauth.request_device_code(client, endpoints, client_id)
    address = oauth.sign_in_address(code)  # checked: the one opened is the one shown
    opening = not options.no_browser and has_desktop(wiring.env, wiring.system)
    where = "this page (opening in your browser)" if opening else "this page in a browser"
    console.say(f"To sign in this device, approve it on {where}:")
    console.say(f"\n    {printable(address)}\n")
    carries_code = address == code.verification_uri_complete
    console.say("Check that it shows this code:" if carries_code else "It asks for this code:")
    console.say(f"\n    {printable(code.user_code)}\n")
    if opening:
        await asyncio.to_thread(wiring.open_browser, address)
    console.say(f"Waiting for approval (the code expires in {int(code.expires_in // 60)} min)…")
    tokens = await oauth.wait_for_approval(
        client, endpoints, client_id, code, sleep=wiring.sleep, clock=wiring.clock
    )
    logs.redactor.add(tokens.access_token, tokens.refresh_token)
    return SignedIn(endpoints, client_id, tokens)


async def _end_sign_in(client: httpx.AsyncClient, signed_in: SignedIn) -> str:
    """Revoke the device flow's tokens (RFC 7009), and say whether that worked."""
    tokens = signed_in.tokens
    pairs = [(tokens.access_token, "access_token")]
    if tokens.refresh_token:
        pairs.append((tokens.refresh_token, "refresh_token"))
    try:
        revoked = [
            await oauth.revoke(client, signed_in.endpoints, signed_in.client_id, token, hint=hint)
            for token, hint in pairs
        ]
    except AccountError as exc:
        return f"nothing was stored, and the browser sign-in could not be revoked ({exc})"
    if all(revoked):
        return "nothing was stored, and the browser sign-in was revoked on the server"
    return (
        "nothing was stored; the server offers no way to revoke the browser sign-in from here, "
        "so it lapses on its own (its access token within a day)"
    )


def has_desktop(env: Mapping[str, str], system: str) -> bool:
    """A browser can open: always on macOS; on Linux only inside a graphical session."""
    if system == "darwin":
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def _settle_worker_id(
    settings: Settings, asked: str, credential: Credential, console: Console
) -> int:
    """The server binds our worker_id unless this user already has it on another platform (e.g.
    polled before as "linux"); then it chooses a fresh one. Adopt that one unless the user
    configured an id explicitly."""
    bound = credential.worker_id
    if bound is None or bound == asked:
        return ExitCode.OK
    if settings.worker_id:  # set in the config file, DEVICE_AGENT_WORKER_ID or --worker-id
        console.fail(worker_id_mismatch(bound, asked))
        return ExitCode.CONFIG
    path = settings.paths.state_dir / "worker_id"  # the file device_agent.identity.worker_id keeps
    path.write_text(bound + "\n", encoding="utf-8")
    console.say(
        f"This device is now worker {printable(bound)} (chosen by the server; it was "
        f"{printable(asked)}). "
        "Watchers pinned to the old id need to be pinned to this device in the web app."
    )
    return ExitCode.OK


def remember_login(
    settings: Settings,
    config_path: Path | None,
    console: Console,
    *,
    worker_id: str | None,
) -> int:
    """Keep the server signed in to (and the worker_id settled) in the config file, so every
    later command works with no flag and no environment. A config file that already names
    another server or worker_id is left alone, and the user is told which one wins and how
    to change it. Blocking (file I/O): call it off the event loop."""
    origin = settings.origin
    path, _ = config_file_in_use(settings.paths, config_path)
    values = {"server": origin}
    if worker_id:
        values["worker_id"] = worker_id
    try:
        done = config_file.remember(path, values, same={"server": same_server})
    except ConfigError as exc:
        console.fail(
            f"{exc.user_message()}. The token is stored; later commands need --server {origin} "
            "until the config file names it"
        )
        return ExitCode.CONFIG
    if done.written:
        shown = ", ".join(f"{key} = {value}" for key, value in done.written.items())
        console.say(f"Saved in {path}: {shown}.")
    if "server" in done.kept:
        console.say(
            f"Not saved: {path} already sets server = {done.kept['server']!r}. Commands run "
            f"without --server (or {ENV_SERVER}) use that one, not {origin}; to switch, set "
            f'server = "{origin}" in {path}.'
        )
    if "worker_id" in done.kept:
        console.say(
            f"Not saved: {path} sets worker_id = {done.kept['worker_id']!r}, but this device's "
            f'token is bound to {worker_id}: set worker_id = "{worker_id}" in {path}, or the '
            "server will refuse the agent's polls."
        )
    return ExitCode.OK


def same_server(current: object, origin: str) -> bool:
    """Does the config file's `server` name `origin` (once normalised, as `config.load` does)?"""
    if not isinstance(current, str):
        return False
    try:
        return validate_server_url(current) == origin
    except ConfigError:
        return False


def _date(timestamp: float | None) -> str:
    if timestamp is None:
        return "an unknown date"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


# ------------------------------------------------------------------ logout


def logout(
    settings: Settings,
    options: argparse.Namespace,
    *,
    console: Console | None = None,
    wiring: Wiring | None = None,
) -> int:
    console, wiring = console or Console(), wiring or Wiring()
    return _run(console, _logout(settings, console, wiring))


async def _logout(settings: Settings, console: Console, wiring: Wiring) -> int:
    store = TokenStore(settings.paths.state_dir, settings.origin)
    async with rotation_lock(store.state_dir, wait=_lock_wait(settings)):
        credential = await asyncio.to_thread(store.load)
        if credential is not None:
            logs.redactor.add(credential.token)
            console.say(await _revoke(settings, credential, wiring))
        removed = await asyncio.to_thread(store.remove)
    for where in removed:
        console.say(f"Token for {settings.origin} removed from the {where}.")
    if not removed:
        console.say(f"No token stored for {settings.origin}.")
    if settings.token:
        console.say(f"{ENV_TOKEN} is set in this environment; logout cannot unset it — remove it.")
    return ExitCode.OK


async def _revoke(settings: Settings, credential: Credential, wiring: Wiring) -> str:
    """Revoke on the server where it offers a way; say plainly when it does not."""
    keep = (
        f"it stays valid on the server until {_date(credential.expires_at)}"
        if credential.expires_at
        else "it stays valid on the server"
    )
    web = "revoke it in the web app (Settings → Access tokens) if it may have leaked"
    try:
        async with account_client_for(settings, transport=wiring.transport) as client:
            endpoints = await oauth.discover(client)
            if not await oauth.revoke(client, endpoints, None, credential.token):
                return f"The server offers no way to revoke this token from here; {keep}: {web}."
            # RFC 7009 answers 200 for a token it did not revoke too (a PAT, say): only a
            # refusal of the token afterwards shows it is gone.
            check = await send(client, "GET", "/api/me/devices", bearer=credential.token)
    except AccountError as exc:
        return f"Could not revoke the token ({exc}); {keep}: {web}."
    if check.status_code == 401:
        return "Revoked the token on the server."
    return f"The server did not revoke this token when asked; {keep}: {web}."


# ----------------------------------------------------------------- trigger


def run_now(
    settings: Settings,
    options: argparse.Namespace,
    *,
    console: Console | None = None,
    wiring: Wiring | None = None,
    poke: Poke | None = None,
) -> int:
    """`trigger ID [--lane]`: queue a run, print what the server said, poke the agent."""
    console, wiring = console or Console(), wiring or Wiring()
    return _run(console, _run_now(settings, options, console, wiring, poke))


async def _run_now(
    settings: Settings,
    options: argparse.Namespace,
    console: Console,
    wiring: Wiring,
    poke: Poke | None,
) -> int:
    credential = await asyncio.to_thread(load_credential, settings)
    if credential is None:
        raise CredentialError(f"no token for {settings.origin}: run `device-agent login`")
    logs.redactor.add(credential.token)
    worker_id = resolve_worker_id(settings)
    async with account_client_for(settings, transport=wiring.transport) as client:
        if not settings.token:
            store = TokenStore(settings.paths.state_dir, settings.origin)
            credential = (
                await maybe_rotate(
                    store, client, label=settings.label, threshold=settings.rotate_days_left * DAY
                )
                or credential
            )
        result = await trigger(
            client, credential, item_id=options.item_id, lane=options.lane, worker_id=worker_id
        )
    console.say(result.describe(options.lane, options.item_id))
    if poke is not None:
        said = poke()
        if said:
            console.say(said)
    return ExitCode.OK


def _lock_wait(settings: Settings) -> float:
    return lock_wait_for(settings.account_timeout_seconds)


def _run(console: Console, command: Coroutine[None, None, int]) -> int:
    """Run one command; a failure the user can fix is one line on stderr and its exit code."""
    try:
        return asyncio.run(command)
    except DeviceAgentError as exc:  # AccountError, CredentialError, StoreError, ConfigError
        console.fail(exc.user_message())
        return int(exc.exit_code)
