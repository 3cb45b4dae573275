"""README's "Using it with a real server", walked as a new user would against the project's own
dev server: a fresh DEVICE_AGENT_HOME, the device flow approved on the server's approval
page, and no --server after login and no DEVICE_AGENT_* variable but DEVICE_AGENT_HOME.

HOME is a fresh folder (the service's unit is written there), the browser is a no-op
(`BROWSER=true`), and `systemctl` is a stand-in on PATH that says the unit is active: the
test never installs a real service. The default agent's CLI (a fake `claude`) is put on
PATH at the point the README says to install it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.agent import install_fake
from tests.support.waiting import wait_for

AGENT = [sys.executable, "-m", "device_agent"]
README = Path(__file__).parents[2] / "README.md"
EXAMPLE_SERVER = "https://lobu.example.com"
USER_CODE = re.compile(r"^\s+([A-Z0-9]{4}-[A-Z0-9]{4})\s*$")

# The README's sequence, as this test runs it (checked against the README below).
COMMANDS = [
    f"device-agent login --server {EXAMPLE_SERVER}",
    "device-agent doctor",
    "device-agent run --once",
    "device-agent service install --dry-run",
    "device-agent service install",
    "device-agent status",
    "device-agent logout",
]

FAKE_SYSTEMCTL = """\
import json, os, sys
with open(os.environ["FAKE_SYSTEMCTL_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if "show" in sys.argv:
    print("ActiveState=active\\nSubState=running\\nExecMainStatus=0")
"""

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the service step stands in for systemctl"
)


def readme_commands() -> list[str]:
    section = README.read_text().split("## Using it with a real server", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`device-agent dev-server --port 0` as a user starts it: its URL and what it prints."""
    printed = tmp_path / "dev-server.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICE_AGENT_")}
    env.update(DEVICE_AGENT_HOME=str(tmp_path / "server-home"), PYTHONUNBUFFERED="1")
    with printed.open("w") as out:
        server = subprocess.Popen(
            [*AGENT, "dev-server", "--port", "0"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        url = wait_for(
            lambda: _listening(printed.read_text()), what="the dev server to print its URL"
        )
        wait_for(lambda: "device-agent login" in printed.read_text(), what="its last line")
        yield url, printed
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)


def _listening(printed: str) -> str | None:
    match = re.search(r"listening on (http://\S+)", printed)
    return match.group(1) if match else None


class User:
    """A shell on a fresh machine: its own HOME, DEVICE_AGENT_HOME and PATH."""

    def __init__(self, root: Path, url: str) -> None:
        self.url = url
        self.home = root / "home"
        self.agent_home = root / "agent-home"
        self.bin = root / "bin"
        for folder in (self.home, self.bin):
            folder.mkdir()
        self.systemctl_log = root / "systemctl.log"
        systemctl = self.bin / "systemctl"
        systemctl.write_text(f"#!{sys.executable}\n{FAKE_SYSTEMCTL}")
        systemctl.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICE_AGENT_")}
        for name in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
            env.pop(name, None)
        env.update(
            DEVICE_AGENT_HOME=str(self.agent_home),
            HOME=str(self.home),
            PATH=f"{self.bin}{os.pathsep}{env.get('PATH', os.defpath)}",
            BROWSER="true",  # webbrowser runs `true URL`: no browser window from a test
            FAKE_SYSTEMCTL_LOG=str(self.systemctl_log),
            PYTHONUNBUFFERED="1",
        )
        self.env = env

    def words(self, command: str) -> list[str]:
        """A README line as this user types it: the example server is theirs."""
        words = command.replace(EXAMPLE_SERVER, self.url).split()
        assert words[0] == "device-agent"
        return [*AGENT, *words[1:]]

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.words(command),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    def login_approved_on_the_page(self, command: str) -> subprocess.CompletedProcess[str]:
        """`login`, with the code it shows approved on the server's /oauth/device page."""
        process = subprocess.Popen(
            self.words(command),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        deadline = threading.Timer(90, process.kill)  # a hung login fails the test
        deadline.start()
        try:
            shown: list[str] = []
            code = None
            while code is None and (line := process.stdout.readline()):
                shown.append(line)
                if match := USER_CODE.match(line):
                    code = match.group(1)
            assert code is not None, "".join(shown)
            with httpx.Client(base_url=self.url) as browser:
                page = browser.get("/oauth/device", params={"user_code": code})
                assert code in page.text
                answer = browser.post(
                    "/oauth/device", data={"user_code": code, "action": "approve"}
                )
                assert "Device approved." in answer.text
            out, err = process.communicate(timeout=90)
        finally:
            deadline.cancel()
        return subprocess.CompletedProcess(
            process.args, process.returncode, "".join(shown) + out, err
        )

    def dev_state(self) -> dict[str, Any]:
        state: dict[str, Any] = httpx.get(f"{self.url}/_dev/state").json()
        return state

    def token(self) -> str:
        stored = json.loads((self.agent_home / "state" / "token.json").read_text())
        token: str = stored[self.url]
        return token


def test_the_readme_sequence_is_what_this_test_runs() -> None:
    assert readme_commands() == COMMANDS


def test_the_readme_real_server_sequence_against_the_dev_server(
    tmp_path: Path, dev_server: tuple[str, Path]
) -> None:
    url, server_said = dev_server
    user = User(tmp_path, url)
    login, doctor, run_once, dry_run, install, status, logout = COMMANDS

    # login: the device flow, approved on the page; the server and worker id are saved.
    signed_in = user.login_approved_on_the_page(login)
    assert signed_in.returncode == 0, signed_in.stderr
    config = user.agent_home / "config" / "config.toml"
    saved = re.search(
        rf"Saved in {re.escape(str(config))}: server = (\S+), worker_id = (\S+)\.", signed_in.stdout
    )
    assert saved is not None, signed_in.stdout
    assert saved.group(1) == url
    worker_id = saved.group(2)
    assert worker_id.startswith("headless:")
    # The dev server's sample watchers were pinned to its default id: they follow this device.
    wait_for(
        lambda: f"are now pinned to {worker_id}, the first device" in server_said.read_text(),
        what="the dev server to pin its samples to the new device",
    )

    # doctor, no --server: server and token pass; the default agent's CLI is not installed.
    checked = user.run(doctor)
    assert f"[ok  ] server reachable: {url}" in checked.stdout, checked.stdout
    assert "[ok  ] token accepted" in checked.stdout
    assert "[FAIL] default agent 'claude-code': claude binary not found" in checked.stdout

    # Until it is installed, `service install --dry-run` refuses with the check and its fix.
    refused = user.run(dry_run)
    assert refused.returncode == 2, refused.stdout
    assert "not installing the service: the agent could not start there" in refused.stderr
    assert "[FAIL] default agent 'claude-code': claude binary not found" in refused.stderr
    assert "install it, or set `default_agent` in the config file" in refused.stderr
    assert "write " not in refused.stdout
    assert not (user.home / ".config").exists()

    # The user installs Claude Code (here: a fake `claude` on PATH); doctor is happy.
    install_fake(user.bin, "claude")
    checked = user.run(doctor)
    assert checked.returncode == 0, checked.stdout
    assert "0 failed" in checked.stdout

    # run --once claims and completes the sample run now pinned to this device.
    ran = user.run(run_once)
    assert ran.returncode == 0, ran.stderr
    [done] = [run for run in user.dev_state()["runs"] if run["status"] != "pending"]
    assert (done["status"], done["claimed_by"]) == ("completed", worker_id)

    planned = user.run(dry_run)
    assert planned.returncode == 0, planned.stderr
    unit = user.home / ".config" / "systemd" / "user" / "device-agent.service"
    assert f"write {unit} (mode 0644):" in planned.stdout
    assert "run: systemctl --user enable --now device-agent.service" in planned.stdout
    assert not unit.exists()

    installed = user.run(install)
    assert installed.returncode == 0, installed.stderr
    assert "the agent is ready (active (running))" in installed.stdout
    assert f'Environment="DEVICE_AGENT_HOME={user.agent_home}"' in unit.read_text()
    enabled = [json.loads(line) for line in user.systemctl_log.read_text().splitlines()]
    assert ["--user", "enable", "--now", "device-agent.service"] in enabled

    shown = user.run(status)
    assert shown.returncode == 0, shown.stderr
    assert f"server:     {url}" in shown.stdout

    # logout revokes: the dev server refuses the token afterwards.
    token = user.token()
    out = user.run(logout)
    assert out.returncode == 0, out.stderr
    assert "Revoked the token on the server." in out.stdout
    refused_token = httpx.get(f"{url}/api/me/devices", headers={"Authorization": f"Bearer {token}"})
    assert refused_token.status_code == 401


def test_setup_does_the_same_in_one_command_for_a_script(
    tmp_path: Path, dev_server: tuple[str, Path]
) -> None:
    url, _ = dev_server
    user = User(tmp_path, url)
    install_fake(user.bin, "claude")
    install_fake(user.bin, "codex")
    command = f"device-agent setup --server {EXAMPLE_SERVER} --agent codex --no-service"
    done = user.login_approved_on_the_page(command)  # no terminal: the flags answer
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"CLI agents found on the service's PATH: claude-code ({user.bin}/claude)" in done.stdout
    assert "Not found: gemini (gemini)" in done.stdout
    config = user.agent_home / "config" / "config.toml"
    assert f"Default agent: codex, saved in {config}." in done.stdout
    assert "[ok  ] default agent 'codex'" in done.stdout
    assert "Not installing the service" in done.stdout
    assert f"  server:     {url}" in done.stdout  # the status it ends with
    assert not (user.home / ".config").exists()
    saved = config.read_text()
    assert f'server = "{url}"' in saved
    assert 'default_agent = "codex"' in saved
    assert 'worker_id = "headless:' in saved
