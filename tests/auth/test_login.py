"""`login`: device flow or local-init, then a child token bound to this device, kept in its home."""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import tomllib
from pathlib import Path

import httpx
import pytest

from device_agent.config import Settings, load
from device_agent.identity import commands
from device_agent.identity.store import CHILD, PAT, TokenStore
from device_agent.identity.worker_id import resolve_worker_id

from .conftest import (
    LOCAL_PAT,
    SERVER,
    USER_TOKEN,
    WORKER,
    Captured,
    Lobu,
    approved,
    child_token,
    make_settings,
    options,
    pending,
)


def stored(settings: Settings) -> TokenStore:
    return TokenStore(settings.paths.state_dir, SERVER)


def test_device_flow_then_mint_keeps_only_the_bound_child_token(
    settings: Settings, lobu: Lobu, captured: Captured, file_keyring: Path
) -> None:
    lobu.oauth(pending(), approved())
    mint = lobu.mint()
    code = commands.login(settings, options(), console=captured.console, wiring=lobu.wiring())
    assert code == 0, captured.text
    assert lobu.mint_bearers == [USER_TOKEN]  # the OAuth token only mints
    body = json.loads(mint.calls.last.request.content)
    assert body == {"platform": "headless", "worker_id": WORKER, "label": "laptop"}
    assert mint.calls.last.request.headers["x-lobu-client"] == "device-agent"
    credential = stored(settings).load()
    assert credential is not None
    assert (credential.token, credential.kind, credential.worker_id) == (
        child_token(1),
        CHILD,
        WORKER,
    )
    assert json.loads(file_keyring.read_text()) == {f"device-agent|{SERVER}": child_token(1)}
    out = captured.out.getvalue()
    assert "WDJB-MJHT" in out
    assert f"{SERVER}/device" in out
    assert f"bound to worker_id {WORKER}, valid until 2027-03-01" in out
    assert "OS keyring (file keyring FileKeyring)" in out


@pytest.mark.parametrize(
    ("env", "system", "no_browser", "opens"),
    [
        ({"DISPLAY": ":0"}, "linux", False, True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", False, True),
        ({}, "linux", False, False),  # ssh into a headless box: print the code only
        ({}, "darwin", False, True),
        ({}, "darwin", True, False),
    ],
)
def test_the_browser_opens_only_in_a_desktop_session(
    settings: Settings,
    lobu: Lobu,
    captured: Captured,
    env: dict[str, str],
    system: str,
    no_browser: bool,
    opens: bool,
) -> None:
    lobu.oauth(approved())
    lobu.mint()
    opened: list[str] = []
    wiring = lobu.wiring(env=env, system=system, opened=opened)
    assert (
        commands.login(
            settings, options(no_browser=no_browser), console=captured.console, wiring=wiring
        )
        == 0
    )
    assert opened == ([f"{SERVER}/device?user_code=WDJB-MJHT"] if opens else [])


def test_local_calls_local_init_once_then_mints(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    init = lobu.router.post("/api/local-init").respond(
        200,
        json={
            "session_token": "session-secret-xyz",
            "cookie_name": "lobu_session",
            "device_token": LOCAL_PAT,
            "device_token_scope": "device_worker:run mcp:read mcp:write mcp:admin profile:read",
            "user": {"id": "u1", "email": "me@example.com", "name": "Me"},
            "organization": {"id": "o1", "slug": "me-personal", "name": "Me"},
        },
    )
    lobu.mint()
    code = commands.login(
        settings, options(local=True), console=captured.console, wiring=lobu.wiring()
    )
    assert code == 0, captured.text
    assert init.call_count == 1
    assert init.calls.last.request.headers["x-lobu-client"] == "device-agent"
    assert lobu.mint_bearers == [LOCAL_PAT]
    credential = stored(settings).load()
    assert credential is not None
    assert (credential.token, credential.org_slug) == (child_token(1), "me-personal")


def test_local_against_a_server_that_is_not_local_says_what_to_do(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    lobu.router.post("/api/local-init").respond(403, json={"error": "missing_client_header"})
    code = commands.login(
        settings, options(local=True), console=captured.console, wiring=lobu.wiring()
    )
    assert code == 3
    assert "without it" in captured.err.getvalue()
    assert stored(settings).load() is None


def test_a_server_chosen_worker_id_is_adopted_when_none_was_configured(
    isolated_home: Path, lobu: Lobu, captured: Captured
) -> None:
    settings = make_settings(isolated_home)  # worker_id generated and kept in the state dir
    before = resolve_worker_id(settings)
    lobu.bound_worker_id = "3f6c1d2e-uuid-from-server"
    lobu.oauth(approved())
    lobu.mint()
    assert commands.login(settings, options(), console=captured.console, wiring=lobu.wiring()) == 0
    assert resolve_worker_id(settings) == "3f6c1d2e-uuid-from-server"
    assert f"it was {before}" in captured.out.getvalue()


def test_a_binding_that_differs_from_the_configured_worker_id_is_explained(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    lobu.bound_worker_id = "other-worker"
    lobu.oauth(approved())
    lobu.mint()
    code = commands.login(settings, options(), console=captured.console, wiring=lobu.wiring())
    assert code == 2
    err = captured.err.getvalue()
    assert f"bound to worker_id 'other-worker', but this device is configured as '{WORKER}'" in err
    assert 'worker_id = "other-worker"' in err


@pytest.mark.parametrize("given", ["", "\n", "   \t \n"])
def test_empty_token_on_stdin_is_a_usage_error_without_any_request(
    settings: Settings, lobu: Lobu, captured: Captured, given: str
) -> None:
    code = commands.login(
        settings,
        options(token_stdin=True),
        console=captured.console,
        stdin=io.StringIO(given),
        wiring=lobu.wiring(),
    )
    assert code == 2
    assert "no token on stdin" in captured.err.getvalue()
    assert lobu.router.calls.call_count == 0


def test_a_pasted_token_is_checked_then_stored(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    pat = "owl_pat_" + "p" * 32
    lobu.router.get("/api/me/devices").respond(200, json={"devices": []})
    code = commands.login(
        settings,
        options(token_stdin=True),
        console=captured.console,
        stdin=io.StringIO(pat + "\n"),
        wiring=lobu.wiring(),
    )
    assert code == 0, captured.text
    credential = stored(settings).load()
    assert credential is not None
    assert (credential.token, credential.kind) == (pat, PAT)


@pytest.mark.parametrize(
    ("answer", "exit_code"),
    [
        (httpx.Response(401, json={"error": "invalid_token"}), 3),
        (httpx.ConnectError("refused"), 4),
    ],
)
def test_a_pasted_token_that_cannot_be_checked_is_not_stored(
    settings: Settings,
    lobu: Lobu,
    captured: Captured,
    answer: httpx.Response | Exception,
    exit_code: int,
) -> None:
    lobu.router.get("/api/me/devices").mock(side_effect=[answer])
    code = commands.login(
        settings,
        options(token_stdin=True),
        console=captured.console,
        stdin=io.StringIO("owl_pat_" + "n" * 32),
        wiring=lobu.wiring(),
    )
    assert code == exit_code
    assert "nothing was stored" in captured.err.getvalue()
    assert stored(settings).load() is None


@pytest.mark.usefixtures("no_keyring")
def test_login_works_without_a_keyring_and_says_where_the_token_went(
    settings: Settings, lobu: Lobu, captured: Captured, tmp_path: Path
) -> None:
    lobu.oauth(approved())
    lobu.mint()
    assert commands.login(settings, options(), console=captured.console, wiring=lobu.wiring()) == 0
    token_file = settings.paths.state_dir / "token.json"
    assert f"stored in the file {token_file} (0600; no keyring backend)" in captured.out.getvalue()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    holders = [
        p for p in tmp_path.rglob("*") if p.is_file() and child_token(1).encode() in p.read_bytes()
    ]
    assert holders == [token_file]


def test_mint_refused_for_scope_explains_the_fix(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    lobu.oauth(approved())
    lobu.router.post("/api/me/devices/mint-child-token").respond(
        403, json={"error": "insufficient_scope", "required": "device_worker:run"}
    )
    code = commands.login(settings, options(), console=captured.console, wiring=lobu.wiring())
    assert code == 3
    assert "may not mint device tokens" in captured.err.getvalue()
    assert stored(settings).load() is None


# ------------------------------------------------------------ the config file


def test_login_saves_the_server_and_worker_id_so_later_commands_need_no_flag(
    isolated_home: Path, lobu: Lobu, captured: Captured
) -> None:
    settings = make_settings(isolated_home)  # the server came from --server, as on first use
    config = settings.paths.config_file
    config.parent.mkdir(parents=True)
    config.write_text("# written by me\nconcurrency = 2  # two at once\n")
    lobu.bound_worker_id = "3f6c1d2e-uuid-from-server"
    lobu.oauth(approved())
    lobu.mint()
    assert commands.login(settings, options(), console=captured.console, wiring=lobu.wiring()) == 0
    text = config.read_text()
    assert text.startswith("# written by me\nconcurrency = 2  # two at once\n")
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    later = load(env={"DEVICE_AGENT_HOME": str(isolated_home)})  # no flag, no DEVICE_AGENT_*
    assert (later.server, later.worker_id, later.concurrency) == (
        SERVER,
        "3f6c1d2e-uuid-from-server",
        2,
    )
    out = captured.out.getvalue()
    assert f"Saved in {config}: server = {SERVER}, worker_id = 3f6c1d2e-uuid-from-server." in out


def test_login_leaves_another_configured_server_alone_and_says_which_wins(
    isolated_home: Path, lobu: Lobu, captured: Captured
) -> None:
    config = isolated_home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('server = "https://other.example.com"\n')
    settings = make_settings(isolated_home)  # --server SERVER wins over the file here
    lobu.oauth(approved())
    lobu.mint()
    assert commands.login(settings, options(), console=captured.console, wiring=lobu.wiring()) == 0
    later = load(env={"DEVICE_AGENT_HOME": str(isolated_home)})
    assert later.server == "https://other.example.com"
    out = captured.out.getvalue()
    assert f"Not saved: {config} already sets server = 'https://other.example.com'" in out
    assert f"use that one, not {SERVER}" in out
    assert f'to switch, set server = "{SERVER}" in {config}' in out
    assert later.worker_id == resolve_worker_id(settings)  # the worker_id was still saved


def test_login_to_the_configured_server_spelled_otherwise_changes_nothing(
    isolated_home: Path, lobu: Lobu, captured: Captured
) -> None:
    config = isolated_home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'server = "{SERVER}/"\nworker_id = "{WORKER}"\n')
    before = config.read_text()
    settings = make_settings(isolated_home)
    lobu.oauth(approved())
    lobu.mint()
    assert commands.login(settings, options(), console=captured.console, wiring=lobu.wiring()) == 0
    assert config.read_text() == before
    assert "Saved in" not in captured.out.getvalue()
    assert "Not saved" not in captured.out.getvalue()


def test_a_pasted_token_saves_the_server_only(
    isolated_home: Path, lobu: Lobu, captured: Captured
) -> None:
    settings = make_settings(isolated_home)
    lobu.router.get("/api/me/devices").respond(200, json={"devices": []})
    code = commands.login(
        settings,
        options(token_stdin=True),
        console=captured.console,
        stdin=io.StringIO("owl_pat_" + "p" * 32 + "\n"),
        wiring=lobu.wiring(),
    )
    assert code == 0, captured.text
    assert tomllib.loads(settings.paths.config_file.read_text()) == {"server": SERVER}


def test_a_config_file_login_cannot_write_is_said_with_the_fix(
    isolated_home: Path, lobu: Lobu, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = isolated_home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("# mine\n")
    settings = make_settings(isolated_home)

    real_replace = os.replace

    def read_only(src: str, dst: str) -> None:  # the config folder is on a read-only mount
        if Path(dst).parent == config.parent:
            raise OSError(errno.EROFS, "Read-only file system")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", read_only)
    lobu.oauth(approved())
    lobu.mint()
    code = commands.login(settings, options(), console=captured.console, wiring=lobu.wiring())
    assert code == 2
    err = captured.err.getvalue()
    assert f"cannot write config file {config}: Read-only file system" in err
    assert f"need --server {SERVER}" in err
    assert stored(settings).load() is not None  # signed in all the same
    assert config.read_text() == "# mine\n"


# ------------------------------------ issue 21, point 9: the address login opens and shows

DEVICE_PAGE = f"{SERVER}/device"
HOSTILE_ADDRESSES = [
    "file:///etc/passwd",
    "javascript:alert(document.cookie)",
    "smb://evil.test/share",
    "--new-window=https://evil.test",
    "--",
    "http://evil.test/device",  # plain http off this machine
    "https://lobu.test@evil.test/device",  # user info: reads as lobu.test, goes to evil.test
    "https://lobu.test/device\x1b]0;owned\x07",
    "https://lobu.test/de vice",
    "https:/evil.test",
    "https://",
    "HTTPS://lobu.test:notaport/device",
]


def sign_in(
    settings: Settings, lobu: Lobu, captured: Captured, opened: list[str], **device_code: object
) -> int:
    lobu.oauth(approved(), **device_code)
    lobu.mint()
    wiring = lobu.wiring(env={"DISPLAY": ":0"}, opened=opened)
    return commands.login(settings, options(), console=captured.console, wiring=wiring)


def test_the_address_opened_is_the_one_shown(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    opened: list[str] = []
    assert sign_in(settings, lobu, captured, opened) == 0, captured.text
    complete = f"{DEVICE_PAGE}?user_code=WDJB-MJHT"
    assert opened == [complete]
    lines = captured.out.getvalue().splitlines()
    assert f"    {complete}" in lines
    assert "    WDJB-MJHT" in lines
    assert "Check that it shows this code:" in lines


@pytest.mark.parametrize("hostile", HOSTILE_ADDRESSES)
def test_an_address_that_is_not_a_web_page_is_neither_opened_nor_shown(
    settings: Settings, lobu: Lobu, captured: Captured, hostile: str
) -> None:
    opened: list[str] = []
    code = sign_in(settings, lobu, captured, opened, verification_uri_complete=hostile)
    assert code == 0, captured.text
    assert opened == [DEVICE_PAGE]  # the plain address, which the user completes with the code
    out = captured.out.getvalue()
    assert f"    {DEVICE_PAGE}" in out.splitlines()
    assert "It asks for this code:" in out
    assert hostile not in out.replace(SERVER, "")


@pytest.mark.parametrize("hostile", HOSTILE_ADDRESSES)
def test_login_stops_when_the_server_sends_no_web_address(
    settings: Settings, lobu: Lobu, captured: Captured, hostile: str
) -> None:
    opened: list[str] = []
    code = sign_in(
        settings,
        lobu,
        captured,
        opened,
        verification_uri=hostile,
        verification_uri_complete=hostile,
    )
    assert code == 2
    assert opened == []
    assert "neither opened nor shown" in captured.err.getvalue()
    assert "\x1b" not in captured.text
    assert not [c for c in lobu.router.calls if c.request.url.path == "/oauth/token"]
    assert stored(settings).load() is None


def test_plain_http_to_this_machine_is_a_web_address(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    local = "http://127.0.0.1:8787/oauth/device?user_code=WDJB-MJHT"
    opened: list[str] = []
    assert sign_in(settings, lobu, captured, opened, verification_uri_complete=local) == 0
    assert opened == [local]
    assert f"    {local}" in captured.out.getvalue().splitlines()


def test_the_user_code_is_shown_with_control_characters_escaped(
    settings: Settings, lobu: Lobu, captured: Captured
) -> None:
    opened: list[str] = []
    user_code = "WDJB\x1b]52;c;ZXZpbA==\x07-MJHT"  # would write the clipboard
    assert sign_in(settings, lobu, captured, opened, user_code=user_code) == 0
    out = captured.out.getvalue()
    assert "\x1b" not in out
    assert "\x07" not in out
    assert "    WDJB\\x1b]52;c;ZXZpbA==\\x07-MJHT" in out.splitlines()


# ----------------------------- issue 21, point 10: the worker_id the server binds is checked


@pytest.mark.parametrize(
    "bound",
    ["evil\nworker", "../../escape", "a/b", "x" * 129, "has space", "cls\x1b[2J", "é-device"],
)
def test_a_worker_id_the_agent_could_not_run_with_is_refused_and_nothing_is_kept(
    isolated_home: Path, lobu: Lobu, captured: Captured, bound: str
) -> None:
    settings = make_settings(isolated_home)  # no configured worker_id: the server's would be kept
    before = resolve_worker_id(settings)
    lobu.bound_worker_id = bound
    lobu.oauth(approved())
    lobu.mint()
    code = commands.login(settings, options(), console=captured.console, wiring=lobu.wiring())
    assert code == 4
    err = captured.err.getvalue()
    assert "is not a valid worker_id" in err
    assert "nothing was stored" in err
    assert "--token-stdin" in err  # what to do instead
    assert "\x1b" not in captured.text
    assert stored(settings).load() is None
    assert resolve_worker_id(settings) == before
    config = settings.paths.config_file
    assert not config.exists() or "worker_id" not in tomllib.loads(config.read_text())
    assert load(env={"DEVICE_AGENT_HOME": str(isolated_home)}).worker_id is None
