"""The desktop pieces wired into the agent: sd_notify under a Type=notify unit, notifications
of finished runs, and `service install --dry-run` through the real command line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_agent.agent.app import run_agent
from device_agent.desktop.notify import Backend, NotificationSettings
from device_agent.desktop.notify.notifier import Notifier
from device_agent.devserver import DevServer, DevState
from device_agent.errors import ExitCode
from tests.support.inprocess import WORKER, settings_for
from tests.support.lab import Lab
from tests.support.waiting import wait_for


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """What systemd listens on for a Type=notify unit: a datagram socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    yield str(path), sock
    sock.close()


def wait_for_datagram(sock: socket.socket, wanted: str, seen: list[str]) -> None:
    """Receive datagrams (keeping every line in `seen`) until one has the line `wanted`."""
    deadline = time.monotonic() + 20  # watchdog pings keep coming: bound the whole wait
    while wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {wanted!r} from the agent; it sent {seen}"
        sock.settimeout(left)
        seen += sock.recv(4096).decode().split("\n")


def test_run_under_systemd_sends_ready_watchdog_and_stopping_and_hides_the_socket(
    lab: Lab, notify_socket: tuple[str, socket.socket]
) -> None:
    address, sock = notify_socket
    run_id = lab.state.queue_run(lab.add_watcher("Say hello"))
    report = lab.cli_log.parent / "cli-report.json"
    agent = lab.start_agent(NOTIFY_SOCKET=address, WATCHDOG_USEC="200000", FAKE_REPORT=str(report))
    seen: list[str] = []
    wait_for_datagram(sock, "READY=1", seen)
    wait_for_datagram(sock, "WATCHDOG=1", seen)  # every 0.1 s: half of WATCHDOG_USEC
    wait_for(lambda: lab.state.run(run_id).status == "completed", what="the run completed")

    agent.send_signal(signal.SIGTERM)
    wait_for_datagram(sock, "STOPPING=1", seen)
    _, err = agent.communicate(timeout=30)
    assert agent.returncode == 0, err
    assert seen.index("READY=1") < seen.index("STOPPING=1")
    assert seen.count("STOPPING=1") == 1
    # The CLI could not speak for the agent: the variables left the environment first.
    cli_env = json.loads(report.read_text())["env"]
    assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC"} & set(cli_env)


def test_a_finished_run_is_shown_as_a_notification_when_its_watcher_asks(
    tmp_path: Path, isolated_home: Path
) -> None:
    shown = tmp_path / "shown.json"
    fake = tmp_path / "notify-send"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(shown)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    fake.chmod(0o755)

    async def go() -> None:
        state = DevState(create_checkin_watcher=False)
        token = state.add_token()
        asks = state.add_watcher(
            prompt="Summarise the inbox",
            name="Inbox digest",
            agent_kind="demo",
            pinned_worker_id=WORKER,
            notification_channel="both",
            notification_priority="high",
        )
        quiet = state.add_watcher(
            prompt="Tidy up", name="Quiet one", agent_kind="demo", pinned_worker_id=WORKER
        )
        async with DevServer(state) as server:
            settings = settings_for(server.url, token, isolated_home)
            for watcher in (asks, quiet):
                state.queue_run(watcher)
                notifier = Notifier(
                    NotificationSettings(), backend=Backend("notify-send", str(fake))
                )
                code = await run_agent(
                    settings,
                    token=token,
                    worker_id=WORKER,
                    once=True,
                    handle_signals=False,
                    notifier=notifier,
                )
                assert code == ExitCode.OK

    asyncio.run(go())
    (argv,) = [json.loads(line) for line in shown.read_text().splitlines()]
    assert argv[:2] == ["--app-name=device-agent", "--urgency=critical"]
    assert argv[3] == "Inbox digest"  # the one whose payload asked; "Quiet one" is canvas-only
    assert argv[4]
    assert not argv[4].startswith("Failed")


def test_service_install_dry_run_through_the_cli_changes_nothing(tmp_path: Path) -> None:
    """Forced past doctor's findings (no token, no CLI): the plan is printed, nothing written,
    not even by the checks."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DEVICE_AGENT_")},
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "DEVICE_AGENT_HOME": str(tmp_path / "agent"),
        "DEVICE_AGENT_SERVER": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        [sys.executable, "-m", "device_agent", "service", "install", "--dry-run", "--force"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "installing anyway (--force), but doctor found:" in result.stdout
    assert "[FAIL] token: no token for http://127.0.0.1:9" in result.stdout
    if sys.platform.startswith("linux"):
        assert "device-agent.service" in result.stdout
        assert "Type=notify" in result.stdout
        assert "systemctl --user" in result.stdout
    assert list(home.iterdir()) == []  # nothing written
    assert not (tmp_path / "agent").exists()
