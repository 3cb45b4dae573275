"""The tray: its menu follows the daemon's state, each entry sends the right request.

Most tests need no display: the menu is a pure function of the daemon's
answers. One test runs the real pystray icon under Xvfb against a real
control socket, and is skipped where Xvfb or the tray extra is missing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from device_agent.config import Paths
from device_agent.desktop.control import ControlServer
from device_agent.desktop.control_client import ControlError, DaemonNotRunning, Target
from device_agent.desktop.tray import (
    ATTENTION,
    IDLE,
    LIMIT,
    OPEN_CONFIG,
    OPEN_LOGS,
    PAST_LIMIT,
    PAUSED,
    QUIT,
    RUNNING,
    Entry,
    Request,
    TrayApp,
    TrayUnavailable,
    build_menu,
    display_problem,
    icon_state,
    load_pystray,
    pystray_menu,
    status_line,
)
from tests.desktop.fakes import FakeHandler

NOW = 1_800_000_000.0
REACHED = "daily limit reached ($5.02 of $5.00); resumes at 00:00"
TARGETS = [Target("12", "watcher", "Inbox digest"), Target("a1", "automation", "Nightly\x1b[2J")]


def labels(entries: list[Entry]) -> list[str]:
    return [entry.label for entry in entries]


# ------------------------------------------------------------------ state and menu


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (None, ATTENTION),
        ({"state": "idle", "runs": []}, IDLE),
        ({"state": "busy", "runs": [{"name": "x"}]}, RUNNING),
        ({"state": "idle", "paused": True}, PAUSED),
        ({"state": "auth_needed"}, ATTENTION),
        ({"state": "idle", "problems": ["token refused"]}, ATTENTION),
        ({"state": "limit_reached", "limit": {"reached": REACHED}}, LIMIT),
        ({"state": "busy", "runs": [{"name": "x"}], "limit": {"reached": REACHED}}, RUNNING),
        ({"state": "idle", "limit": {"reached": None, "past_limit": True}}, IDLE),
    ],
)
def test_icon_state_follows_the_daemon(status: dict[str, Any] | None, state: str) -> None:
    assert icon_state(status) == state


def test_status_line_shows_the_running_run_and_its_elapsed_time() -> None:
    status = {"state": "busy", "runs": [{"name": "Inbox digest", "elapsed_seconds": 125.2}]}
    assert status_line(status, NOW) == "Running Inbox digest (2 min 5 s)"
    assert status_line({"state": "idle", "last_poll_at": NOW - 12}, NOW) == (
        "Idle, last poll 12 s ago"
    )
    assert status_line(None, NOW) == "Daemon not running"
    assert status_line({"problems": ["login needed: run device-agent login"]}, NOW).startswith(
        "Needs attention: login needed"
    )


def test_the_menu_is_built_from_the_daemons_state_and_targets() -> None:
    menu = build_menu({"state": "idle", "runs": []}, TARGETS, now=NOW)
    assert labels(menu) == [
        "Idle",
        "Run now",
        "Pause",
        "Open logs",
        "Open config",
        "Quit tray",
    ]
    assert menu[0].enabled is False
    run_now = menu[1].submenu
    assert labels(list(run_now)) == ["Inbox digest", "Nightly [2J"]
    assert run_now[0].action == Request("trigger", {"target_id": "12", "lane": "watcher"})
    assert run_now[1].action == Request("trigger", {"target_id": "a1", "lane": "automation"})
    assert menu[2].action == Request("pause")
    assert [menu[3].action, menu[4].action, menu[5].action] == [OPEN_LOGS, OPEN_CONFIG, QUIT]


def test_a_paused_daemon_offers_resume() -> None:
    menu = build_menu({"state": "idle", "paused": True}, TARGETS, now=NOW)
    assert menu[2] == Entry("Resume", Request("resume"))


def test_at_the_daily_limit_the_menu_says_so_and_offers_to_go_on() -> None:
    status = {"state": "limit_reached", "runs": [], "limit": {"reached": REACHED}}
    menu = build_menu(status, TARGETS, now=NOW)
    assert menu[0].label == "Daily limit reached ($5.02 of $5.00); resumes at 00:00"
    assert labels(menu) == [
        menu[0].label,
        "Run now",
        "Pause",
        PAST_LIMIT,
        "Open logs",
        "Open config",
        "Quit tray",
    ]
    assert menu[3].action == Request("resume_past_limit")
    busy = {**status, "runs": [{"name": "Inbox digest", "elapsed_seconds": 3}]}
    assert status_line(busy, NOW).startswith("Daily limit reached")  # over a run in flight
    many_tokens = {
        "limit": {"reached": "daily limit reached (1.23M of 1M tokens); resumes at 00:00"}
    }
    assert status_line(many_tokens, NOW).endswith("resumes at 00:00")  # whole, not cut


def test_without_a_daemon_only_the_local_entries_work() -> None:
    menu = build_menu(None, [], now=NOW)
    assert menu[0].label == "Daemon not running"
    assert [entry.enabled for entry in menu] == [False, False, False, True, True, True]
    assert labels(list(menu[1].submenu)) == ["Nothing run on this device yet"]


# ------------------------------------------------------------------ actions


class FakeClient:
    """Stands in for control_client.request; answers like a daemon with two targets."""

    def __init__(self, *, running: bool = True) -> None:
        self.running = running
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, path: Path, op: str, timeout: float, **args: Any) -> dict[str, Any]:
        if not self.running:
            raise DaemonNotRunning(path)
        if op == "status":
            return {"state": "idle", "runs": []}
        if op == "targets":
            return {"targets": [target.as_dict() for target in TARGETS]}
        self.sent.append((op, args))
        if op == "trigger" and args["target_id"] == "gone":
            raise ControlError("the daemon refused 'trigger': 404 Watcher not found")
        return {}


def make_app(tmp_path: Path, client: FakeClient) -> tuple[TrayApp, list[Path]]:
    opened: list[Path] = []
    root = tmp_path / "home"
    paths = Paths(root / "config", root / "state", root / "logs")
    paths.ensure()
    app = TrayApp(tmp_path / "control.sock", paths, client=client, opener=opened.append)
    app.refresh()
    return app, opened


def test_each_entry_sends_the_right_control_request(tmp_path: Path) -> None:
    client = FakeClient()
    app, opened = make_app(tmp_path, client)
    menu = app.menu()
    for entry in [*menu[1].submenu, menu[2]]:
        assert entry.action is not None
        assert app.perform(entry.action) is True
    app.perform(Request("resume"))
    assert client.sent == [
        ("trigger", {"target_id": "12", "lane": "watcher"}),
        ("trigger", {"target_id": "a1", "lane": "automation"}),
        ("pause", {}),
        ("resume", {}),
    ]
    assert opened == []


def test_open_logs_and_config_open_the_folders_until_the_files_exist(tmp_path: Path) -> None:
    app, opened = make_app(tmp_path, FakeClient())
    app.perform(OPEN_LOGS)
    app.perform(OPEN_CONFIG)
    app.paths.config_file.write_text("")
    app.perform(OPEN_CONFIG)
    assert opened == [app.paths.log_dir, app.paths.config_dir, app.paths.config_file]


def test_quit_ends_the_tray_and_a_refused_request_is_kept_for_the_user(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, FakeClient())
    assert app.perform(QUIT) is False
    app.perform(Request("trigger", {"target_id": "gone", "lane": "watcher"}))
    assert app.message is not None
    assert "404 Watcher not found" in app.message


def test_a_stopped_daemon_shows_as_needing_attention(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, FakeClient(running=False))
    assert app.status is None
    assert app.state == ATTENTION
    assert app.menu()[0].label == "Daemon not running"


class FakePystray:
    """The two pystray classes the tray uses, recording what it builds."""

    class Menu:
        def __init__(self, *items: Any) -> None:
            self._items = items

        @property
        def items(self) -> tuple[Any, ...]:
            if len(self._items) == 1 and callable(self._items[0]):
                return tuple(self._items[0]())
            return self._items

    class MenuItem:
        def __init__(self, text: str, action: Any, enabled: bool = True) -> None:
            self.text, self.action, self.enabled = text, action, enabled

        def __call__(self, icon: Any) -> None:
            self.action(icon, self)


def test_the_pystray_menu_is_rebuilt_from_the_app_and_clicks_reach_it(tmp_path: Path) -> None:
    client = FakeClient()
    app, _ = make_app(tmp_path, client)
    stopped: list[bool] = []
    menu = pystray_menu(FakePystray, app, lambda: stopped.append(True))
    texts = [item.text for item in menu.items]
    assert texts == ["Idle", "Run now", "Pause", "Open logs", "Open config", "Quit tray"]
    run_now = menu.items[1].action
    run_now.items[0](None)
    menu.items[5](None)
    assert client.sent == [("trigger", {"target_id": "12", "lane": "watcher"})]
    assert stopped == [True]


def test_no_display_is_a_clear_refusal() -> None:
    problem = display_problem({}, platform="linux")
    assert problem is not None
    assert "no display" in problem
    assert display_problem({"DISPLAY": ":0"}, platform="linux") is None
    assert display_problem({}, platform="darwin") is None


def test_the_command_without_a_display_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    code = (
        "import argparse, sys\n"
        "from device_agent import config\n"
        "from device_agent.desktop import tray\n"
        "sys.exit(tray.main(argparse.Namespace(), config.load()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "device-agent: " in result.stderr


def test_icons_are_drawn_for_every_state() -> None:
    pytest.importorskip("PIL")
    from device_agent.desktop.tray import draw_icon

    images = {state: draw_icon(state) for state in (IDLE, RUNNING, PAUSED, LIMIT, ATTENTION)}
    assert {image.size for image in images.values()} == {(64, 64)}
    assert len({image.tobytes() for image in images.values()}) == 5


# ------------------------------------------------------------------ the real tray, headless


@pytest.fixture
def xvfb() -> Iterator[str]:
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    if importlib.util.find_spec("pystray") is None:
        pytest.skip("the tray extra is not installed (pip install -e '.[tray]')")
    read, write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read, "rb") as ready:  # Xvfb writes its display number once it listens
            number = ready.readline().decode().strip()
        yield f":{number}"
    finally:
        server.terminate()
        server.wait()


@pytest.fixture
def live_socket(tmp_path: Path) -> Iterator[tuple[Path, FakeHandler]]:
    """A real control server with a fake agent behind it, on a loop in another thread."""
    handler = FakeHandler()
    handler.state = {"state": "busy", "runs": [{"name": "Inbox digest", "elapsed_seconds": 75}]}
    path = tmp_path / "control.sock"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    server = ControlServer(path, handler)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=30)
    try:
        yield path, handler
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def test_the_real_tray_under_xvfb_builds_its_menu_and_sends_requests(
    xvfb: str, live_socket: tuple[Path, FakeHandler], tmp_path: Path
) -> None:
    path, handler = live_socket
    probe = Path(__file__).with_name("tray_probe.py")
    env = {**os.environ, "DISPLAY": xvfb, "PYTHONPATH": str(Path(__file__).parents[2])}
    process = subprocess.Popen(
        [sys.executable, str(probe), str(path), str(tmp_path / "home")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # ended by the probe itself; the kill below only tidies up after a failure
    try:
        out, _ = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    shown, clicked = map(json.loads, out.splitlines())
    assert shown["state"] == RUNNING
    menu = shown["menu"]
    assert [item["text"] for item in menu] == [
        "Running Inbox digest (1 min 15 s)",
        "Run now",
        "Pause",
        "Open logs",
        "Open config",
        "Quit tray",
    ]
    assert [item["text"] for item in menu[1]["submenu"]] == ["Inbox digest", "Nightly"]
    assert clicked == {"clicked": True}
    assert ("trigger", "12", "watcher") in handler.calls
    assert ("pause",) in handler.calls


def test_without_the_extra_the_tray_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setitem(sys.modules, "pystray", None)  # what an uninstalled module looks like
    with pytest.raises(TrayUnavailable, match=r"pip install 'device-agent\[tray\]'"):
        load_pystray()
