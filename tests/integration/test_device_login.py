"""`login`, rotation, `logout` and `trigger` as processes against the dev server, with no
keyring backend (the 0600 file in the state dir), and the token nowhere it must not be."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.support.lab import WORKER_ID, Lab

USER_CODE = re.compile(r"^\s+([A-Z0-9]{4}-[A-Z0-9]{4})\s*$")
DAY = 86400.0


class Session:
    """Runs `device-agent` commands for one lab as the user would, keeping every word they
    printed so a test can check that no token is among them."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.said: list[str] = []
        # No DEVICE_AGENT_TOKEN: the commands use what `login` stored.
        self.env = lab.env(DEVICE_AGENT_TOKEN="")

    def run(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        self.lab.write_config()
        result = subprocess.run(
            [sys.executable, "-m", "device_agent", *args],
            input=stdin,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.said += [result.stdout, result.stderr]
        return result

    def login_with_device_flow(self) -> subprocess.CompletedProcess[str]:
        """`device-agent login --no-browser`, approved from the "browser" (the dev route)."""
        self.lab.write_config()
        process = subprocess.Popen(
            [sys.executable, "-m", "device_agent", "login", "--no-browser"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        deadline = threading.Timer(60, process.kill)  # a hung login fails the test, not CI
        deadline.start()
        try:
            shown: list[str] = []
            code = None
            while code is None and (line := process.stdout.readline()):
                shown.append(line)
                if match := USER_CODE.match(line):
                    code = match.group(1)
            assert code is not None, "".join(shown)
            approved = httpx.post(f"{self.lab.url}/_dev/oauth/approve", json={"user_code": code})
            assert approved.status_code == 200
            out, err = process.communicate()
        finally:
            deadline.cancel()
        result = subprocess.CompletedProcess(
            process.args, process.returncode, "".join(shown) + out, err
        )
        self.said += [result.stdout, result.stderr]
        return result

    def stored(self) -> dict[str, object]:
        """The credential as the agent keeps it: the token file and its description."""
        state = self.lab.home / "state"
        token = json.loads((state / "token.json").read_text())[self.lab.url]
        info = json.loads((state / "credential.json").read_text())[self.lab.url]
        return {"token": token, **info}

    def assert_token_kept_secret(self, *tokens: str) -> None:
        """Nowhere but the token file: not in what was printed, the log, the journal, status
        files, the CLIs' argv."""
        for token in tokens:
            assert not [text for text in self.said if token in text]
            for path in self.lab.home.rglob("*"):
                if path.is_file() and path.name != "token.json":
                    assert token.encode() not in path.read_bytes(), path
            for execution in self.lab.executions():
                assert token not in " ".join(execution["argv"])


@pytest.fixture
def session(lab: Lab) -> Session:
    return Session(lab)


def test_device_flow_login_keeps_a_bound_token_in_a_0600_file_and_run_uses_it(
    lab: Lab, session: Session
) -> None:
    lab.state.oauth.poll_interval = 1  # the token endpoint is asked again after 1 s, not 5 s
    result = session.login_with_device_flow()
    assert result.returncode == 0, result.stderr
    assert f"{lab.url}/oauth/device?user_code=" in result.stdout  # the address it would open
    assert "Check that it shows this code:" in result.stdout
    assert "(0600; no keyring backend)" in result.stdout
    stored = session.stored()
    token = str(stored["token"])
    record = lab.state.live_token(token)
    assert record is not None
    assert record.bound_worker_id == WORKER_ID  # the child token, not the OAuth access token
    assert stored["kind"] == "child"
    assert stored["platform"] == "headless"
    token_file = lab.home / "state" / "token.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

    run_id = lab.state.queue_run(lab.add_watcher("Use the minted token"))
    result = session.run("run", "--once")
    assert result.returncode == 0, result.stderr
    assert lab.state.run(run_id).status == "completed"
    device = lab.state.find_device(WORKER_ID)
    assert device is not None
    assert device.platform == "headless"  # polled with the platform the token was minted for

    status = session.run("status", "--json")
    assert status.returncode == 0
    doctor = session.run("doctor")
    assert f"token home: file {token_file} (0600; no keyring backend)" in doctor.stdout
    session.assert_token_kept_secret(token)


def test_login_local_mints_a_child_token_and_keeps_only_that(lab: Lab, session: Session) -> None:
    result = session.run("login", "--local")
    assert result.returncode == 0, result.stderr
    assert "bound to worker_id" in result.stdout
    stored = session.stored()
    token = str(stored["token"])
    record = lab.state.live_token(token)
    assert record is not None
    assert record.bound_worker_id == WORKER_ID  # the child, not local-init's unbound PAT
    assert stored["org_slug"] == lab.state.org.slug
    session.assert_token_kept_secret(token)


def test_a_token_close_to_expiry_is_rotated_at_start_and_the_old_one_dies(
    lab: Lab, session: Session
) -> None:
    assert session.run("login", "--local").returncode == 0
    old = str(session.stored()["token"])
    info_file = lab.home / "state" / "credential.json"
    info = json.loads(info_file.read_text())
    info[lab.url]["expires_at"] = time.time() + 10 * DAY  # fewer than 30 days left
    info_file.write_text(json.dumps(info))

    result = session.run("run", "--once")
    assert result.returncode == 0, result.stderr
    new = str(session.stored()["token"])
    assert new != old
    assert lab.state.live_token(old) is None  # re-minting revoked it
    record = lab.state.live_token(new)
    assert record is not None
    assert record.bound_worker_id == WORKER_ID
    session.assert_token_kept_secret(old, new)


def test_login_local_on_lobu_1_6_keeps_one_unbound_token_and_run_now_still_works(
    lab: Lab, session: Session
) -> None:
    """Issue 21, points 3 and 1, against the dev server answering as Lobu 1.6.0: it mints no
    device token for `headless`, and its tool proxy has get_watcher, not a `get` action."""
    lab.state.child_tokens = "1.6.0"
    before = {t.token for t in lab.state.live_tokens()}
    for _ in range(2):
        result = session.run("login", "--local")
        assert result.returncode == 0, result.stderr
        assert "not bound to this device" in result.stdout
    new = [t.token for t in lab.state.live_tokens() if t.token not in before]
    assert len(new) == 1  # one local-init PAT however often login runs, and it is the one kept
    assert session.stored()["token"] == new[0]
    assert session.stored()["kind"] == "local"

    watcher = lab.add_watcher("Run me now")
    assert session.run("run", "--once").returncode == 0
    triggered = session.run("trigger", watcher)
    assert triggered.returncode == 0, triggered.stderr
    assert re.search(
        rf"watcher {watcher}: run \d+ queued, server status 'pending'", triggered.stdout
    )
    assert queued_run(lab, watcher) is not None
    session.assert_token_kept_secret(new[0])


def test_browser_login_on_lobu_1_6_revokes_its_sign_in_and_stores_nothing(
    lab: Lab, session: Session
) -> None:
    lab.state.child_tokens = "1.6.0"
    lab.state.oauth.poll_interval = 1
    before = {t.token for t in lab.state.live_tokens()}
    result = session.login_with_device_flow()
    assert result.returncode == 2
    assert "issues no token bound to this device" in result.stderr
    assert "the browser sign-in was revoked on the server" in result.stderr
    assert [t for t in lab.state.live_tokens() if t.token not in before] == []
    assert not (lab.home / "state" / "token.json").exists()


def test_logout_revokes_the_device_token_and_removes_every_copy(lab: Lab, session: Session) -> None:
    assert session.run("login", "--local").returncode == 0
    token = str(session.stored()["token"])
    result = session.run("logout")
    assert result.returncode == 0, result.stderr
    assert lab.state.live_token(token) is None  # the server refuses it from now on
    assert "Revoked the token on the server." in result.stdout
    assert "removed from the file" in result.stdout
    assert lab.url not in json.loads((lab.home / "state" / "token.json").read_text())
    assert session.run("run", "--once").returncode == 3
    session.assert_token_kept_secret(token)


def test_logout_of_a_pasted_token_the_server_keeps_says_so(lab: Lab, session: Session) -> None:
    pat = lab.state.add_token()  # made in the web app: /oauth/revoke answers 200, keeps it
    assert session.run("login", "--token-stdin", stdin=pat + "\n").returncode == 0
    result = session.run("logout")
    assert result.returncode == 0, result.stderr
    assert lab.state.live_token(pat) is not None
    assert "Revoked" not in result.stdout
    assert "revoke it in the web app" in result.stdout
    assert "removed from the file" in result.stdout
    session.assert_token_kept_secret(pat)


def test_token_stdin_with_nothing_piped_in_is_a_usage_error(session: Session) -> None:
    result = session.run("login", "--token-stdin", stdin="   \n")
    assert result.returncode == 2
    assert "no token on stdin" in result.stderr


# ------------------------------------------------------------------ Run now


def queued_run(lab: Lab, watcher_id: str) -> object:
    watcher = lab.state.find_watcher(int(watcher_id))
    assert watcher is not None
    return lab.state.active_run_of(watcher)


def test_trigger_with_a_bound_token_uses_the_device_route_and_prints_the_servers_status(
    lab: Lab, session: Session
) -> None:
    assert session.run("login", "--local").returncode == 0
    watcher = lab.add_watcher("Run me now")
    first = session.run("trigger", watcher)
    assert first.returncode == 0, first.stderr
    assert re.search(rf"watcher {watcher}: run \d+ queued, server status 'pending'", first.stdout)
    assert "no agent is running here" in first.stdout  # said plainly, not "will pick it up"
    again = session.run("trigger", watcher)
    assert again.returncode == 0
    assert "was already pending; no new run was queued" in again.stdout
    paths = [r.path for r in lab.state.requests]
    assert f"/api/workers/me/watchers/{watcher}/trigger" in paths
    assert not [p for p in paths if p.endswith("/manage_watchers")]


def test_trigger_with_an_unbound_token_checks_the_pinning_then_uses_the_tool_proxy(
    lab: Lab,
) -> None:
    watcher = lab.add_watcher("Pinned here")
    assert lab.run_agent("run", "--once").returncode == 0  # registers this device
    result = lab.run_agent("trigger", watcher)  # DEVICE_AGENT_TOKEN: an unbound PAT
    assert result.returncode == 0, result.stderr
    assert "queued, server status 'pending'" in result.stdout
    assert queued_run(lab, watcher) is not None
    assert any(r.path.endswith("/get_watcher") for r in lab.state.requests)  # the pinning
    assert any(r.path.endswith("/manage_watchers") for r in lab.state.requests)
    assert lab.token not in result.stdout + result.stderr


def test_trigger_with_an_unbound_token_refuses_a_watcher_pinned_elsewhere(lab: Lab) -> None:
    elsewhere = lab.state.add_watcher(
        prompt="Not ours", name="Elsewhere", pinned_worker_id="linux:other-device"
    )
    assert lab.run_agent("run", "--once").returncode == 0
    result = lab.run_agent("trigger", elsewhere)
    assert result.returncode == 2
    assert "pinned to another device" in result.stderr
    assert queued_run(lab, elsewhere) is None


def test_trigger_with_a_slug_gets_a_hint(lab: Lab) -> None:
    result = lab.run_agent("trigger", "inbox-digest")
    assert result.returncode == 2
    assert "takes the number the web app shows" in result.stderr
