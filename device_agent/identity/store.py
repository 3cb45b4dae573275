"""Where the device token lives: the OS keyring when a usable backend exists, else a 0600 file.

The file lives in the agent's own state dir and nowhere else, as the GitHub and Claude Code CLIs do
on machines without a keyring. Backends that would keep the token in plain text somewhere shared
(keyrings.alt) or not at all (fail, null) do not count as a keyring.

What is known *about* the token (kind, worker_id binding, expiry, org, and which home holds it) is
not secret; it is kept in `credential.json` next to the journal so the secret itself stays a bare
string in the keyring, and `status` can say where the token is without opening the keyring
(`recorded`), which may be slow to find or ask the owner for access.
Keyring calls can block (D-Bus, a keychain prompt): async callers run them with asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from device_agent.errors import DeviceAgentError, ExitCode

KEYRING_SERVICE: Final = "device-agent"
TOKEN_FILE: Final = "token.json"  # noqa: S105 - a file name
INFO_FILE: Final = "credential.json"
HOME_KEY: Final = "home"  # in INFO_FILE: where `save` put the token, e.g. "OS keyring (…)"

# Modules whose backends store nothing, fail on every call, or write plain text to a shared place.
_NOT_A_KEYRING: Final = ("keyring.backends.fail", "keyring.backends.null", "keyrings.alt")

if TYPE_CHECKING:
    import keyring.backend

CHILD: Final = "child"  # a PAT minted for and bound to this device's worker_id; rotates itself
PAT: Final = "pat"  # a pasted PAT or DEVICE_AGENT_TOKEN: binding unknown, never rotated
# The PAT `local-init` gave, kept because the server minted no child token with it: not bound,
# never expires, never rotated. `login --local` mints with it rather than call local-init again.
LOCAL: Final = "local"
DAY: Final = 86400.0
ROTATE_WHEN_LEFT: Final = 30 * DAY  # a child token re-mints itself with fewer days left
# Far above any token a Lobu server issues (an owl_pat_ is under 100 characters, a JWT a
# few hundred); a server sending more is broken or hostile, and nothing that long is kept.
MAX_TOKEN_CHARS: Final = 4096


class StoreError(DeviceAgentError):
    """The token file is unsafe or unreadable; the message says what to do."""

    exit_code = ExitCode.CONFIG  # a file in the state dir needs the user's attention


@dataclass(frozen=True)
class Credential:
    token: str = field(repr=False)
    kind: str = PAT
    worker_id: str | None = None  # the worker_id a child token is bound to
    platform: str | None = None  # the platform the device row was minted with
    expires_at: float | None = None  # unix seconds
    org_slug: str | None = None
    refused: str | None = None  # why the server refused it before its expiry: log in again

    @property
    def bound(self) -> bool:
        return self.kind == CHILD and self.worker_id is not None

    def info(self) -> dict[str, Any]:
        """Everything but the secret."""
        return {k: v for k, v in asdict(self).items() if k != "token"}


def needs_rotation(credential: Credential, now: float, threshold: float = ROTATE_WHEN_LEFT) -> bool:
    """A child token with fewer than `threshold` seconds left (and not refused)."""
    return (
        credential.kind == CHILD
        and credential.refused is None
        and credential.expires_at is not None
        and credential.expires_at - now < threshold
    )


def token_shape_problem(token: str) -> str | None:
    """Why `token` cannot be a bearer token, which goes into an HTTP header; None if it can."""
    if len(token) > MAX_TOKEN_CHARS:
        return f"{len(token)} characters long, over the {MAX_TOKEN_CHARS} a token may have"
    if len(token) < 8 or not all("!" <= ch <= "~" for ch in token):
        return "too short, or with spaces or non-ASCII characters"
    return None


def worker_id_mismatch(bound_to: str, configured: str) -> str:
    """The fix for a token bound to another worker_id (the server's 403 worker_id_mismatch)."""
    return (
        f"the stored token is bound to worker_id {bound_to!r}, but this device is configured "
        f'as {configured!r}: set `worker_id = "{bound_to}"` in config.toml (or '
        f"DEVICE_AGENT_WORKER_ID), or run `device-agent login` to mint a token for {configured!r}"
    )


def usable_keyring() -> keyring.backend.KeyringBackend | None:
    """The highest-priority backend that really keeps secrets, or None."""
    # keyring is imported by the first store, not with this module: history, logs, pause and
    # a trigger the running agent answers never read a token.
    import keyring
    from keyring.backends.chainer import ChainerBackend

    try:
        backend = keyring.get_keyring()
    except Exception:  # a broken keyring configuration means "no keyring" here
        return None
    candidates = backend.backends if isinstance(backend, ChainerBackend) else [backend]
    for candidate in candidates:
        if not type(candidate).__module__.startswith(_NOT_A_KEYRING):
            return candidate
    return None


def keyring_name(backend: keyring.backend.KeyringBackend) -> str:
    name = getattr(backend, "name", "") or type(backend).__name__
    return str(name)  # e.g. "SecretService Keyring", "macOS Keyring"


class TokenStore:
    """The token for one server, in its one home, plus what is known about it."""

    def __init__(self, state_dir: Path, server: str) -> None:
        self.state_dir = state_dir
        self.server = server
        self._backend = usable_keyring()

    @property
    def token_file(self) -> Path:
        return self.state_dir / TOKEN_FILE

    def describe(self) -> str:
        """Which home is used, for login, status and doctor."""
        if self._backend is not None:
            return f"OS keyring ({keyring_name(self._backend)})"
        return f"file {self.token_file} (0600; no keyring backend)"

    # ---------------------------------------------------------------- token

    def load(self) -> Credential | None:
        token = self.read_token()
        if not token:
            return None
        info = _read_json(self.state_dir / INFO_FILE).get(self.server)
        known = {k: v for k, v in (info or {}).items() if k in _INFO_KEYS}
        return Credential(token=token, **known)

    def read_token(self) -> str | None:
        if self._backend is not None:
            import keyring.errors  # already loaded by usable_keyring

            try:
                token = self._backend.get_password(KEYRING_SERVICE, self.server)
            except keyring.errors.KeyringError:
                token = None  # a locked or broken keyring: the file may still hold one
            if token:
                return token
        value = _read_json(self.token_file, secret=True).get(self.server)
        return value if isinstance(value, str) and value else None

    def save(self, credential: Credential) -> str:
        """Store the token in its home (and only there); return where it went. A token that
        could never be sent (`token_shape_problem`) is refused and nothing is stored."""
        problem = token_shape_problem(credential.token)
        if problem is not None:
            raise StoreError(f"refused to store a token that is {problem}: nothing was stored")
        where = self._write_token(credential.token)
        self._update_info({**credential.info(), HOME_KEY: where})
        return where

    def mark_refused(self, reason: str) -> None:
        """Remember that the server refused the token before its expiry (status: log in again)."""
        current = self.load()
        if current is not None:
            self._update_info(replace(current, refused=reason).info())

    def remove(self) -> list[str]:
        """Delete every stored copy; return a description of each one removed."""
        removed: list[str] = []
        if self._backend is not None:
            import keyring.errors  # already loaded by usable_keyring

            with contextlib.suppress(keyring.errors.PasswordDeleteError):
                self._backend.delete_password(KEYRING_SERVICE, self.server)
                removed.append(f"OS keyring ({keyring_name(self._backend)})")
        tokens = _read_json(self.token_file, secret=True)
        if tokens.pop(self.server, None) is not None:
            _write_json(self.token_file, tokens)
            removed.append(f"file {self.token_file}")
        info = _read_json(self.state_dir / INFO_FILE)
        if info.pop(self.server, None) is not None:
            _write_json(self.state_dir / INFO_FILE, info)
        return removed

    def _write_token(self, token: str) -> str:
        if self._backend is not None:
            import keyring.errors  # already loaded by usable_keyring

            try:
                self._backend.set_password(KEYRING_SERVICE, self.server, token)
            except keyring.errors.KeyringError:
                self._backend = None  # a keyring that refuses writes is no home: use the file
            else:
                self._drop_file_copy()
                return self.describe()
        tokens = _read_json(self.token_file, secret=True)
        tokens[self.server] = token
        _write_json(self.token_file, tokens)
        return self.describe()

    def _drop_file_copy(self) -> None:
        tokens = _read_json(self.token_file, secret=True)
        if tokens.pop(self.server, None) is not None:
            _write_json(self.token_file, tokens)

    def _update_info(self, info: dict[str, Any]) -> None:
        path = self.state_dir / INFO_FILE
        everything = _read_json(path)
        before = everything.get(self.server)
        if HOME_KEY not in info and isinstance(before, dict) and HOME_KEY in before:
            info = {**info, HOME_KEY: before[HOME_KEY]}  # the token stays where it was
        everything[self.server] = info
        _write_json(path, everything)


_INFO_KEYS: Final = frozenset(Credential.__dataclass_fields__) - {"token"}


@dataclass(frozen=True)
class Recorded:
    """What the state dir says of the token for one server, read without the keyring."""

    home: str | None  # where `save` put it; None when saved before homes were recorded
    refused: str | None  # why the server refused it before its expiry


def recorded(state_dir: Path, server: str) -> Recorded | None:
    """What `save` recorded of the token for `server`; None when none was saved (or only
    `remove`d since). It says where the token was put, not that it is still there: a token
    deleted from the keyring by hand is found missing by `load` (and `doctor`)."""
    info = _read_json(state_dir / INFO_FILE).get(server)
    if isinstance(info, dict):
        home, refused = info.get(HOME_KEY), info.get("refused")
        return Recorded(
            home if isinstance(home, str) else None,
            refused if isinstance(refused, str) else None,
        )
    if _read_json(state_dir / TOKEN_FILE, secret=True).get(server):  # no info: a bare file copy
        return Recorded(f"file {state_dir / TOKEN_FILE} (0600; no keyring backend)", None)
    return None


# ------------------------------------------------------------------ files


def _read_json(path: Path, *, secret: bool = False) -> dict[str, Any]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StoreError(
            f"cannot open {path} ({exc.strerror}); it must be a regular file, not a link: "
            "delete it and run `device-agent login` again"
        ) from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if secret and stat.S_IMODE(mode) & 0o077:
            raise StoreError(
                f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}): "
                f"run `chmod 600 {path}`, or delete it and log in again"
            )
        raw = handle.read()
    try:
        data = json.loads(raw)
    except ValueError:
        raise StoreError(
            f"{path} is damaged (not JSON): delete it and run `device-agent login` again"
        ) from None
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` atomically with a new 0600 file (created exclusively, never via a link)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(json.dumps(data, indent=1).encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
