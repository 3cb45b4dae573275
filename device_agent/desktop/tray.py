"""`device-agent tray`: an icon showing what the agent does, and a menu to steer it.

The icon shows idle / running / paused / daily limit reached / needs attention;
the menu shows the status line, "Run now ▸" one entry per watcher or automation
this device has run, Pause or Resume, "Go on past the daily limit today" while
the owner's daily limit holds, Open logs, Open config and Quit tray.

The tray is a separate process that talks to the daemon only through the
control socket, so a tray that hangs or crashes cannot touch a run. The menu
is a pure function of the daemon's answers (`build_menu`), testable without
a display; pystray and Pillow (the `device-agent[tray]` extra) are imported
only to show it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from device_agent.config import Paths, Settings
from device_agent.desktop.control_client import (
    ControlError,
    DaemonNotRunning,
    Target,
    request,
    socket_path,
)
from device_agent.desktop.notify.policy import clean

IDLE: Final = "idle"
RUNNING: Final = "running"
PAUSED: Final = "paused"
ATTENTION: Final = "attention"
LIMIT: Final = "limit"  # the owner's daily limit is reached: no new runs until the day turns
ATTENTION_STATES: Final = frozenset({"auth_needed", "rejected"})
MAX_LABEL: Final = 60
MAX_LIMIT_LABEL: Final = 80  # "Daily limit reached ($1,234.56 of $1,000.00); resumes at 00:00"
PAST_LIMIT: Final = "Go on past the daily limit today"
REFRESH_SECONDS: Final = 5.0


@dataclass(frozen=True)
class Request:
    """A control request a menu entry sends."""

    op: str
    args: Mapping[str, str] = field(default_factory=dict)


OPEN_LOGS: Final = "open_logs"
OPEN_CONFIG: Final = "open_config"
QUIT: Final = "quit"
Action = Request | str  # a control request, or one of the local actions above


@dataclass(frozen=True)
class Entry:
    label: str
    action: Action | None = None
    enabled: bool = True
    submenu: tuple[Entry, ...] = ()


# ------------------------------------------------------------------ the menu


def icon_state(status: Mapping[str, Any] | None) -> str:
    if status is None or status.get("problems") or status.get("state") in ATTENTION_STATES:
        return ATTENTION
    if status.get("paused"):
        return PAUSED
    if status.get("runs"):
        return RUNNING
    if limit_reached(status):
        return LIMIT
    return IDLE


def limit_reached(status: Mapping[str, Any] | None) -> str | None:
    """The daemon's words when the owner's daily limit holds: "daily limit reached (… of …);
    resumes at 00:00"; None otherwise."""
    limit = status.get("limit") if status is not None else None
    reached = limit.get("reached") if isinstance(limit, Mapping) else None
    return reached if isinstance(reached, str) and reached else None


def status_line(status: Mapping[str, Any] | None, now: float) -> str:
    if status is None:
        return "Daemon not running"
    problems = status.get("problems") or []
    if problems:
        return clean(f"Needs attention: {problems[0]}", MAX_LABEL)
    if reached := limit_reached(status):
        return clean(reached[:1].upper() + reached[1:], MAX_LIMIT_LABEL)
    runs = status.get("runs") or []
    if len(runs) == 1:
        run = runs[0]
        elapsed = _duration(run.get("elapsed_seconds"))
        return clean(f"Running {run.get('name', 'a run')} ({elapsed})", MAX_LABEL)
    if runs:
        return f"Running {len(runs)} runs"
    if status.get("paused"):
        return "Paused: claiming no new runs"
    last = status.get("last_poll_at")
    if isinstance(last, int | float):
        return f"Idle, last poll {_duration(max(0.0, now - last))} ago"
    return clean(str(status.get("state", "starting")).capitalize(), MAX_LABEL)


def build_menu(
    status: Mapping[str, Any] | None, targets: Sequence[Target], *, now: float
) -> list[Entry]:
    """The whole menu; `status` is None when no daemon answers."""
    alive = status is not None
    run_now = tuple(
        Entry(
            clean(target.name, MAX_LABEL) or target.id,
            Request("trigger", {"target_id": target.id, "lane": target.lane}),
            enabled=alive,
        )
        for target in targets
    ) or (Entry("Nothing run on this device yet", enabled=False),)
    paused = bool(status and status.get("paused"))
    past_limit = [Entry(PAST_LIMIT, Request("resume_past_limit"))] if limit_reached(status) else []
    return [
        Entry(status_line(status, now), enabled=False),
        Entry("Run now", submenu=run_now, enabled=alive),
        Entry("Resume", Request("resume"), enabled=alive)
        if paused
        else Entry("Pause", Request("pause"), enabled=alive),
        *past_limit,
        Entry("Open logs", OPEN_LOGS),
        Entry("Open config", OPEN_CONFIG),
        Entry("Quit tray", QUIT),
    ]


def _duration(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


# ------------------------------------------------------------------ the tray's logic

Client = Callable[..., dict[str, Any]]
Opener = Callable[[Path], None]


def open_path(path: Path) -> None:
    """Show a file or folder in the desktop's default app."""
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    subprocess.Popen([opener, str(path)], stdin=subprocess.DEVNULL, start_new_session=True)


class TrayApp:
    """What the tray shows and does, independent of how it is drawn."""

    def __init__(
        self,
        control: Path,
        paths: Paths,
        *,
        client: Client = request,
        opener: Opener = open_path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.control = control
        self.paths = paths
        self.client = client
        self.opener = opener
        self.clock = clock
        self.status: dict[str, Any] | None = None
        self.targets: list[Target] = []
        self.message: str | None = None  # the last thing that went wrong, for the user

    def refresh(self) -> None:
        try:
            self.status = self.client(self.control, "status", 3.0)
            answer = self.client(self.control, "targets", 3.0)
            self.targets = [Target.from_dict(item) for item in answer.get("targets", [])]
        except DaemonNotRunning:
            self.status, self.targets = None, []
        except ControlError as exc:
            self.status, self.targets = None, []
            self.message = str(exc)

    @property
    def state(self) -> str:
        return icon_state(self.status)

    def menu(self) -> list[Entry]:
        return build_menu(self.status, self.targets, now=self.clock())

    def perform(self, action: Action) -> bool:
        """Do what a menu entry says; False when the tray should quit."""
        if action == QUIT:
            return False
        if action == OPEN_LOGS:
            self._open(self.paths.log_file if self.paths.log_file.exists() else self.paths.log_dir)
        elif action == OPEN_CONFIG:
            config = self.paths.config_file
            self._open(config if config.exists() else self.paths.config_dir)
        elif isinstance(action, Request):
            try:
                timeout = 60.0 if action.op == "trigger" else 5.0
                self.client(self.control, action.op, timeout, **action.args)
                self.message = None
            except ControlError as exc:
                self.message = str(exc)
            self.refresh()
        return True

    def _open(self, path: Path) -> None:
        try:
            self.opener(path)
        except OSError as exc:
            self.message = f"cannot open {path}: {exc.strerror}"


# ------------------------------------------------------------------ drawing and pystray

_COLOURS: Final = {
    IDLE: (46, 160, 67),
    RUNNING: (31, 111, 235),
    PAUSED: (110, 118, 129),
    ATTENTION: (219, 109, 40),
    LIMIT: (154, 103, 0),
}


def draw_icon(state: str, size: int = 64) -> Any:
    """The icon for `state`, drawn with Pillow: a coloured disc with a glyph."""
    from PIL import Image, ImageDraw  # the optional tray extra: imported only to draw

    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((2, 2, size - 3, size - 3), fill=_COLOURS[state])
    white = (255, 255, 255)
    u = size / 16
    if state == RUNNING:
        draw.polygon([(6 * u, 4.5 * u), (6 * u, 11.5 * u), (11.5 * u, 8 * u)], fill=white)
    elif state == PAUSED:
        draw.rectangle((5 * u, 4.5 * u, 7 * u, 11.5 * u), fill=white)
        draw.rectangle((9 * u, 4.5 * u, 11 * u, 11.5 * u), fill=white)
    elif state == LIMIT:  # a bar: the way is closed until the day turns
        draw.rectangle((4 * u, 7 * u, 12 * u, 9 * u), fill=white)
    elif state == ATTENTION:
        draw.rectangle((7.2 * u, 3.5 * u, 8.8 * u, 9.5 * u), fill=white)
        draw.ellipse((7.1 * u, 10.5 * u, 8.9 * u, 12.3 * u), fill=white)
    else:
        draw.ellipse((6 * u, 6 * u, 10 * u, 10 * u), fill=white)
    return image


def pystray_menu(pystray: Any, app: TrayApp, stop: Callable[[], None]) -> Any:
    """A pystray menu that asks `app` for its entries each time it is shown."""

    def item(entry: Entry) -> Any:
        if entry.submenu:
            return pystray.MenuItem(
                entry.label, pystray.Menu(*map(item, entry.submenu)), enabled=entry.enabled
            )
        action = entry.action

        def clicked(icon: Any, menu_item: Any) -> None:
            if action is not None and not app.perform(action):
                stop()

        return pystray.MenuItem(entry.label, clicked, enabled=entry.enabled)

    return pystray.Menu(lambda: tuple(map(item, app.menu())))


def make_icon(app: TrayApp) -> tuple[Any, threading.Event]:
    """The pystray icon, and the event that ends its refresh loop."""
    import pystray  # the optional tray extra, which connects to the display on import

    stopped = threading.Event()
    holder: list[Any] = []

    def stop() -> None:
        stopped.set()
        holder[0].stop()

    app.refresh()
    icon = pystray.Icon(
        "device-agent", draw_icon(app.state), "device-agent", pystray_menu(pystray, app, stop)
    )
    holder.append(icon)
    return icon, stopped


def show(icon: Any, app: TrayApp) -> None:
    """Bring the icon up to date with `app` (after a refresh)."""
    icon.icon = draw_icon(app.state)
    icon.title = f"device-agent: {app.menu()[0].label}"
    icon.update_menu()


def run_tray(app: TrayApp, *, refresh_seconds: float = REFRESH_SECONDS) -> None:
    icon, stopped = make_icon(app)

    def setup(icon: Any) -> None:
        icon.visible = True
        # pystray calls setup on a thread of its own; refreshing there keeps its loop free.
        while not stopped.wait(refresh_seconds):
            app.refresh()
            show(icon, app)

    try:
        icon.run(setup=setup)
    except Exception:
        # After "Quit tray" some backends fail while tearing down (GTK asks D-Bus for a
        # notification service that may not exist); the user asked to quit, so quit.
        if not stopped.is_set():
            raise
    finally:
        stopped.set()


# ------------------------------------------------------------------ command line


def add_arguments(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser] = (),
) -> argparse.ArgumentParser:
    """Add `tray`; the caller then calls `main`."""
    return subparsers.add_parser(
        "tray",
        parents=list(parents),
        help="the tray menu: status, Run now, pause (needs device-agent[tray])",
        description=(
            "An icon showing idle / running / paused / daily limit reached / needs attention, "
            "and a menu with the status line, Run now for each watcher or automation this "
            "device runs, Pause / Resume, going on past the daily limit, Open logs and Open "
            "config. It talks to the running agent only through its "
            "control socket. Install with: pip install 'device-agent[tray]'"
        ),
    )


def display_problem(environ: Mapping[str, str], platform: str = sys.platform) -> str | None:
    """Why no tray can be shown here, or None."""
    if platform.startswith("linux") and not (
        environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")
    ):
        return (
            "no display (DISPLAY and WAYLAND_DISPLAY are unset): run the tray in a desktop session"
        )
    return None


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Run `device-agent tray` until "Quit tray"; 2 with a message when it cannot be shown."""
    try:
        control = socket_path(settings.paths.state_dir)
        has_menu = load_pystray()
    except (ControlError, TrayUnavailable) as exc:
        print(f"device-agent: {exc}", file=sys.stderr)
        return 2
    if not has_menu:
        print(
            "device-agent: this desktop's tray backend shows no menu, only the icon: "
            "install PyGObject (python3-gi) for the menu",
            file=sys.stderr,
        )
    try:
        run_tray(TrayApp(control, settings.paths))
    except Exception as exc:  # pystray's backends fail in their own ways (no D-Bus session, ...)
        print(
            f"device-agent: the tray could not run: {type(exc).__name__}: {exc} — "
            "check that this desktop has a system tray and a D-Bus session",
            file=sys.stderr,
        )
        return 1
    return 0


class TrayUnavailable(Exception):
    """No tray can be shown here; the message says why and what to do."""


def load_pystray() -> bool:
    """Import the tray extra; whether its backend can show a menu."""
    problem = display_problem(os.environ)
    if problem is not None:
        raise TrayUnavailable(problem)
    try:
        import PIL  # noqa: F401 - only to tell a missing extra apart from a display problem
        import pystray
    except ImportError:
        raise TrayUnavailable(
            "the tray needs the optional extra: pip install 'device-agent[tray]'"
        ) from None
    except Exception as exc:  # pystray connects to the display on import
        raise TrayUnavailable(f"cannot reach the display: {type(exc).__name__}: {exc}") from None
    return bool(pystray.Icon.HAS_MENU)
