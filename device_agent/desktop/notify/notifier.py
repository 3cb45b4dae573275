"""The `Notifier` the runner calls: it picks the backend and shows a finished run in the
background, under the policy (`policy.py`); `find_backend` and `check` (for `doctor`) say
which program would show it."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
from collections.abc import Callable
from typing import Final

from device_agent.desktop.notify.backends import PREFERRED, Backend
from device_agent.desktop.notify.config import NotificationSettings
from device_agent.desktop.notify.policy import (
    MAX_BODY,
    MAX_TITLE,
    Decision,
    FinishedRun,
    NotificationPolicy,
    clean,
    message,
)
from device_agent.logs import get_logger

log = get_logger(__name__)

SPAWN_TIMEOUT: Final = 10.0

Which = Callable[[str], "str | None"]


def find_backend(
    settings: NotificationSettings, *, platform: str = sys.platform, which: Which = shutil.which
) -> Backend | None:
    if settings.backend == "none":
        return None
    names = (
        (settings.backend,)
        if settings.backend != "auto"
        else PREFERRED.get("linux" if platform.startswith("linux") else platform, ())
    )
    for name in names:
        if path := which(name):
            return Backend(name, path)
    return None


def check(
    settings: NotificationSettings, *, platform: str = sys.platform, which: Which = shutil.which
) -> tuple[bool, str]:
    """For `doctor`: (found, what) — a missing notifier is a warning, not a failure."""
    backend = find_backend(settings, platform=platform, which=which)
    if backend is not None:
        return True, f"{backend.name} ({backend.path})"
    if settings.backend == "none":
        return False, 'off (notifications.backend = "none")'
    if platform == "darwin":
        return False, "osascript not found: it ships with macOS; check PATH includes /usr/bin"
    return False, (
        f"no {settings.backend if settings.backend != 'auto' else 'notify-send or gdbus'} "
        "found: install libnotify-bin (Debian/Ubuntu) or libnotify (Fedora/Arch)"
    )


class Notifier:
    """`submit()` a finished run; it is shown (or not) in the background."""

    def __init__(
        self,
        settings: NotificationSettings,
        *,
        clock: Callable[[], float] = time.time,
        backend: Backend | None = None,
        find: Callable[[NotificationSettings], Backend | None] = find_backend,
    ) -> None:
        self.policy = NotificationPolicy(settings, clock=clock)
        self.backend = backend if backend is not None else find(settings)
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, run: FinishedRun) -> Decision:
        """Decide now, show later; never raises, never waits."""
        try:
            decision = self.policy.decide(run)
        except Exception:  # a bug here must not touch the run it is about
            log.exception("notification policy failed", target=run.key)
            return Decision(False, "internal error")
        if not decision.show:
            log.debug("notification skipped", target=run.key, reason=decision.reason)
            return decision
        if self.backend is None:
            return Decision(False, "no notifier on this machine")
        title, body = message(run)
        argv = self.backend.argv(title, body, self.policy.priority(run))
        task = asyncio.get_running_loop().create_task(self._show(argv, run.key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return decision

    def notice(self, title: str, body: str, *, key: str = "device-agent") -> Decision:
        """Show a notice about the agent itself (the daily limit reached), not about a run:
        the per-run policy does not apply — the caller shows it once — only `backend`."""
        if self.backend is None:
            return Decision(False, "no notifier on this machine")
        argv = self.backend.argv(clean(title, MAX_TITLE), clean(body, MAX_BODY), "normal")
        task = asyncio.get_running_loop().create_task(self._show(argv, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Decision(True, "a notice about the agent")

    async def _show(self, argv: list[str], key: str) -> None:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            log.warning("cannot show a notification", notifier=argv[0], error=str(exc))
            return
        try:
            async with asyncio.timeout(SPAWN_TIMEOUT):
                _, stderr = await process.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            log.warning("the notifier hung and was stopped", notifier=argv[0], target=key)
            return
        if process.returncode:
            log.warning(
                "the notifier failed",
                notifier=argv[0],
                code=process.returncode,
                stderr=stderr.decode(errors="replace")[-300:],
            )

    async def aclose(self) -> None:
        """Wait for notifications still being shown (at shutdown)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
