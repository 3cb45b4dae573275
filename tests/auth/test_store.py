"""Where the token lives: a real keyring when there is one, else a 0600 file in the state dir."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail

from device_agent.cli import doctor
from device_agent.config import Settings
from device_agent.identity.credentials import describe_token_home, resolve_token, token_status
from device_agent.identity.store import CHILD, Credential, StoreError, TokenStore, usable_keyring

from .conftest import SERVER, forget_keyring

TOKEN = "owl_pat_" + "s" * 32


def files_holding(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_usable_keyring_holds_the_token_and_no_file_does(
    settings: Settings, file_keyring: Path, tmp_path: Path
) -> None:
    store = TokenStore(settings.paths.state_dir, SERVER)
    where = store.save(Credential(token=TOKEN, kind=CHILD, worker_id="w", expires_at=1e10))
    assert where == "OS keyring (file keyring FileKeyring)"
    assert json.loads(file_keyring.read_text()) == {f"device-agent|{SERVER}": TOKEN}
    assert files_holding(tmp_path, TOKEN) == [file_keyring]
    assert store.load() == Credential(token=TOKEN, kind=CHILD, worker_id="w", expires_at=1e10)


@pytest.mark.usefixtures("no_keyring")
def test_without_a_keyring_the_token_is_a_0600_file_in_the_state_dir_only(
    settings: Settings, tmp_path: Path
) -> None:
    store = TokenStore(settings.paths.state_dir, SERVER)
    where = store.save(Credential(token=TOKEN))
    token_file = settings.paths.state_dir / "token.json"
    assert where == f"file {token_file} (0600; no keyring backend)"
    assert files_holding(tmp_path, TOKEN) == [token_file]
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert resolve_token(settings) == TOKEN


def test_the_null_backend_is_no_keyring(settings: Settings) -> None:  # conftest's default
    assert usable_keyring() is None
    assert describe_token_home(settings).startswith("file ")


def test_a_plaintext_keyrings_alt_backend_is_not_trusted(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    written: list[str] = []

    class PlaintextKeyring(fail.Keyring):  # what keyrings.alt.file.PlaintextKeyring does
        priority = 0.5  # type: ignore[assignment]

        def set_password(self, service: str, username: str, password: str) -> None:
            written.append(password)

    PlaintextKeyring.__module__ = "keyrings.alt.file"
    monkeypatch.setattr(keyring.core, "_keyring_backend", PlaintextKeyring())
    assert usable_keyring() is None
    TokenStore(settings.paths.state_dir, SERVER).save(Credential(token=TOKEN))
    assert written == []
    assert files_holding(tmp_path, TOKEN) == [settings.paths.state_dir / "token.json"]


@pytest.mark.usefixtures("no_keyring")
def test_a_token_file_that_is_a_link_is_refused(settings: Settings, tmp_path: Path) -> None:
    elsewhere = tmp_path / "shared.json"
    elsewhere.write_text("{}")
    settings.paths.state_dir.mkdir(parents=True)
    (settings.paths.state_dir / "token.json").symlink_to(elsewhere)
    with pytest.raises(StoreError, match="not a link"):
        TokenStore(settings.paths.state_dir, SERVER).load()


@pytest.mark.usefixtures("no_keyring")
def test_a_token_file_others_can_read_is_refused(settings: Settings) -> None:
    store = TokenStore(settings.paths.state_dir, SERVER)
    store.save(Credential(token=TOKEN))
    store.token_file.chmod(0o644)
    with pytest.raises(StoreError, match="chmod 600"):
        store.load()


def test_remove_deletes_the_keyring_entry_and_any_file_copy(
    settings: Settings, file_keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    forget_keyring(monkeypatch)
    TokenStore(settings.paths.state_dir, SERVER).save(Credential(token="owl_pat_" + "f" * 32))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.integration.file_keyring.FileKeyring")
    forget_keyring(monkeypatch)
    store = TokenStore(settings.paths.state_dir, SERVER)
    store.save(Credential(token=TOKEN))  # a keyring appeared later: the file copy goes
    assert json.loads(store.token_file.read_text()) == {}
    store.token_file.write_text(json.dumps({SERVER: "owl_pat_" + "f" * 32}))  # a stray copy
    store.token_file.chmod(0o600)
    assert store.remove() == ["OS keyring (file keyring FileKeyring)", f"file {store.token_file}"]
    assert store.load() is None
    assert json.loads(file_keyring.read_text()) == {}


@pytest.mark.usefixtures("no_keyring")
def test_doctor_says_the_file_is_used_and_does_not_fail(settings: Settings) -> None:
    check = doctor._keyring(settings)
    assert check.ok is True
    token_file = settings.paths.state_dir / "token.json"
    assert check.detail == f"file {token_file} (0600; no keyring backend)"


def test_status_says_where_the_token_is_without_opening_the_keyring(
    settings: Settings, file_keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TokenStore(settings.paths.state_dir, SERVER)
    store.save(Credential(token=TOKEN, kind=CHILD, worker_id="w", expires_at=1e10))
    opened: list[str] = []
    monkeypatch.setattr(
        "device_agent.identity.store.usable_keyring", lambda: opened.append("keyring")
    )
    assert token_status(settings) == ("OS keyring (file keyring FileKeyring)", None)
    store.mark_refused("refused by the server (401)")  # keeps the recorded home
    assert token_status(settings) == (
        "OS keyring (file keyring FileKeyring)",
        "log in again: refused by the server (401)",
    )
    assert opened == []


@pytest.mark.usefixtures("no_keyring")
def test_status_with_no_token_saved_says_to_log_in(settings: Settings) -> None:
    assert token_status(settings) == (None, "no token: run `device-agent login`")
    store = TokenStore(settings.paths.state_dir, SERVER)
    store.save(Credential(token=TOKEN))
    token_file = settings.paths.state_dir / "token.json"
    assert token_status(settings) == (f"file {token_file} (0600; no keyring backend)", None)
    store.remove()
    assert token_status(settings) == (None, "no token: run `device-agent login`")


def test_a_token_saved_before_homes_were_recorded_is_looked_up_in_the_store(
    settings: Settings, file_keyring: Path
) -> None:
    TokenStore(settings.paths.state_dir, SERVER).save(Credential(token=TOKEN))
    info_file = settings.paths.state_dir / "credential.json"
    info = json.loads(info_file.read_text())
    del info[SERVER]["home"]
    info_file.write_text(json.dumps(info))
    assert token_status(settings) == ("OS keyring (file keyring FileKeyring)", None)
