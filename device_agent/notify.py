"""OS notifications when a run finishes, under a policy that respects the user's attention.

The server may ask for a notification (watcher lane: `notification_channel`
of `notification` or `both`), but no server enforces cooldowns or budgets,
so the device does (the fields arrive with the claimed run: docs/protocol.md,
"Poll and claim"). The rules, in order:

1. Wanted? A per-target setting in the config wins (the owner can mute a
   watcher or turn one on); else the payload's channel; else the global
   `enabled`.
2. A failing target notifies once; later failures stay quiet until a run of
   it succeeds again.
3. Cooldown: a target notifies at most once per `cooldown_seconds` (or the
   watcher's own `min_cooldown_seconds`, whichever is longer). The first
   failure after successes is not held back by the cooldown.
4. Daily budget (per local calendar day, default 10): `normal` notifies
   while fewer than `budget_per_day` were shown today; `low` only while fewer
   than half were, so low-priority chatter is dropped first and never crowds
   out the rest; `high` may pass the budget, up to twice it — the priority
   comes from the server, which must not be able to flood the desktop.

The counters live in memory: a restarted agent starts a fresh day's budget
and forgets cooldowns, which errs towards one notification too many rather
than a missed failure.

Showing a notification runs `osascript` (macOS) or `notify-send` / `gdbus`
(Linux) as a child process with an argv list, in the background: it never
blocks or fails a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import shutil
import sys
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

log = structlog.get_logger(__name__)

PRIORITIES: Final = ("low", "normal", "high")
NOTIFYING_CHANNELS: Final = ("notification", "both")
MAX_TITLE: Final = 64
MAX_BODY: Final = 200
SPAWN_TIMEOUT: Final = 10.0


class NotificationConfigError(ValueError):
    """A [notifications] setting is wrong; the message names the key and the fix."""


# ------------------------------------------------------------------ settings


@dataclass(frozen=True)
class TargetSetting:
    """`[notifications.targets."watcher:12"]`: mute or enable one target, set its priority."""

    enabled: bool | None = None
    priority: str | None = None


@dataclass(frozen=True)
class NotificationSettings:
    enabled: bool = False  # for runs whose payload does not ask and that have no own setting
    budget_per_day: int = 10
    cooldown_seconds: float = 300.0
    backend: str = "auto"  # auto | osascript | notify-send | gdbus | none
    targets: Mapping[str, TargetSetting] = field(default_factory=dict)  # "watcher:12" -> ...

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> NotificationSettings:
        """Parse the `[notifications]` table of the config file."""
        known = {"enabled", "budget_per_day", "cooldown_seconds", "backend", "targets"}
        for key in data:
            if key not in known:
                raise NotificationConfigError(
                    f"unknown setting 'notifications.{key}': use one of {', '.join(sorted(known))}"
                )
        enabled = data.get("enabled", False)
        if not isinstance(enabled, bool):
            raise NotificationConfigError("notifications.enabled must be true or false")
        budget = data.get("budget_per_day", 10)
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
            raise NotificationConfigError("notifications.budget_per_day must be a whole number ≥ 0")
        cooldown = data.get("cooldown_seconds", 300.0)
        if not isinstance(cooldown, int | float) or isinstance(cooldown, bool) or cooldown < 0:
            raise NotificationConfigError("notifications.cooldown_seconds must be seconds ≥ 0")
        backend = data.get("backend", "auto")
        if backend not in ("auto", *BACKENDS, "none"):
            raise NotificationConfigError(
                f"notifications.backend must be one of auto, {', '.join(BACKENDS)}, none"
            )
        targets = data.get("targets", {})
        if not isinstance(targets, Mapping):
            raise NotificationConfigError("[notifications.targets] must be a table")
        return cls(
            enabled=enabled,
            budget_per_day=budget,
            cooldown_seconds=float(cooldown),
            backend=backend,
            targets={str(key): _target_setting(str(key), value) for key, value in targets.items()},
        )


def _target_setting(key: str, value: Any) -> TargetSetting:
    where = f'notifications.targets."{key}"'
    lane, _, target_id = key.partition(":")
    if lane not in ("watcher", "automation") or not target_id:
        raise NotificationConfigError(
            f'{where}: name a target as "watcher:<id>" or "automation:<id>"'
        )
    if isinstance(value, bool):
        return TargetSetting(enabled=value)
    if not isinstance(value, Mapping) or set(value) - {"enabled", "priority"}:
        raise NotificationConfigError(
            f"{where} must be true, false, or a table with enabled and priority"
        )
    enabled = value.get("enabled")
    priority = value.get("priority")
    if enabled is not None and not isinstance(enabled, bool):
        raise NotificationConfigError(f"{where}.enabled must be true or false")
    if priority is not None and priority not in PRIORITIES:
        raise NotificationConfigError(f"{where}.priority must be one of {', '.join(PRIORITIES)}")
    return TargetSetting(enabled=enabled, priority=priority)


# ------------------------------------------------------------------ the policy


@dataclass(frozen=True)
class FinishedRun:
    """What the agent knows when a run has finished and its result is settled."""

    lane: str  # "watcher" or "automation"
    target_id: str
    name: str
    ok: bool
    text: str  # the result, or the error
    channel: str | None = None  # the payload's notification_channel (watcher lane)
    priority: str | None = None  # the payload's notification_priority
    min_cooldown_seconds: float | None = None  # the watcher's own min_cooldown_seconds

    @property
    def key(self) -> str:
        return f"{self.lane}:{self.target_id}"


@dataclass(frozen=True)
class Decision:
    show: bool
    reason: str


class NotificationPolicy:
    """Decides whether a finished run is worth interrupting the user for."""

    def __init__(
        self, settings: NotificationSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._last_shown: dict[str, float] = {}
        self._failure_told: set[str] = set()
        self._day: tuple[int, int, int] | None = None
        self._shown_today = 0

    def decide(self, run: FinishedRun) -> Decision:
        """Decide, and count the notification as shown when the answer is yes."""
        if run.ok:
            self._failure_told.discard(run.key)
        decision = self._check(run)
        if decision.show:
            self._last_shown[run.key] = self.clock()
            self._shown_today += 1
            if not run.ok:
                self._failure_told.add(run.key)
        return decision

    def _check(self, run: FinishedRun) -> Decision:
        own = self.settings.targets.get(run.key, TargetSetting())
        if own.enabled is not None:
            if not own.enabled:
                return Decision(False, f"notifications for {run.key} are off in the config")
        elif run.channel not in NOTIFYING_CHANNELS and not self.settings.enabled:
            return Decision(False, "the run does not ask to notify and the config is off")
        if not run.ok and run.key in self._failure_told:
            return Decision(False, "already told about this failure")
        if run.ok and self._cooling_down(run):  # a first failure is not held back
            return Decision(False, "cooling down")
        return self._within_budget(self.priority(run))

    def priority(self, run: FinishedRun) -> str:
        """The config's priority for the target, else the payload's, else normal."""
        own = self.settings.targets.get(run.key, TargetSetting()).priority
        if own is not None:
            return own
        return run.priority if run.priority in PRIORITIES else "normal"

    def _cooling_down(self, run: FinishedRun) -> bool:
        last = self._last_shown.get(run.key)
        cooldown = max(self.settings.cooldown_seconds, run.min_cooldown_seconds or 0.0)
        return last is not None and self.clock() - last < cooldown

    def _within_budget(self, priority: str) -> Decision:
        today = time.localtime(self.clock())[:3]
        if today != self._day:
            self._day, self._shown_today = today, 0
        budget = self.settings.budget_per_day
        allowed = {"low": budget // 2, "normal": budget, "high": 2 * budget}[priority]
        if self._shown_today >= allowed:
            return Decision(False, f"daily budget spent for {priority} priority")
        return Decision(True, f"{priority} priority, {self._shown_today + 1} today")


# ------------------------------------------------------------------ the message


def clean(text: str, limit: int) -> str:
    """Server text made safe to show: no control or format characters, one line, bounded."""
    kept = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") else ch for ch in text
    )
    line = " ".join(kept.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def message(run: FinishedRun) -> tuple[str, str]:
    """The title and the body: the target's name, and the first line of the result."""
    first = next((line for line in run.text.splitlines() if line.strip()), "")
    title = clean(run.name, MAX_TITLE) or run.key
    body = clean(first, MAX_BODY - 10) or "(no output)"
    return title, (body if run.ok else f"Failed: {body}")


# ------------------------------------------------------------------ backends

Which = Callable[[str], "str | None"]

_MAC_SCRIPT: Final = (
    "on run argv",
    "display notification (item 2 of argv) with title (item 1 of argv)",
    "end run",
)


def osascript_argv(binary: str, title: str, body: str, priority: str) -> list[str]:
    """The text travels as arguments of the script, never inside it: nothing to escape.

    osascript reads options with getopt, so a text starting with "-" gets a
    leading space rather than being taken for an option.
    """
    script = [part for line in _MAC_SCRIPT for part in ("-e", line)]
    return [
        binary,
        *script,
        *(f" {text}" if text.startswith("-") else text for text in (title, body)),
    ]


def notify_send_argv(binary: str, title: str, body: str, priority: str) -> list[str]:
    urgency = {"low": "low", "normal": "normal", "high": "critical"}[priority]
    # The body may be rendered as markup by the notification server: escape it.
    return [
        binary,
        "--app-name=device-agent",
        f"--urgency={urgency}",
        "--",
        title,
        html.escape(body, quote=False),
    ]


def gdbus_argv(binary: str, title: str, body: str, priority: str) -> list[str]:
    urgency = {"low": 0, "normal": 1, "high": 2}[priority]
    return [
        binary,
        "call",
        "--session",
        "--dest=org.freedesktop.Notifications",
        "--object-path=/org/freedesktop/Notifications",
        "--method=org.freedesktop.Notifications.Notify",
        "'device-agent'",
        "0",
        "''",
        gvariant_string(title),
        gvariant_string(html.escape(body, quote=False)),
        "[]",
        f"{{'urgency': <byte {urgency}>}}",
        "-1",
    ]


def gvariant_string(text: str) -> str:
    """A GVariant text-format string literal (gdbus parses its arguments as GVariant text)."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


ArgvBuilder = Callable[[str, str, str, str], list[str]]
BACKENDS: Final[Mapping[str, ArgvBuilder]] = {
    "osascript": osascript_argv,
    "notify-send": notify_send_argv,
    "gdbus": gdbus_argv,
}
_PREFERRED: Final = {"darwin": ("osascript",), "linux": ("notify-send", "gdbus")}


@dataclass(frozen=True)
class Backend:
    name: str
    path: str

    def argv(self, title: str, body: str, priority: str) -> list[str]:
        return BACKENDS[self.name](self.path, title, body, priority)


def find_backend(
    settings: NotificationSettings, *, platform: str = sys.platform, which: Which = shutil.which
) -> Backend | None:
    if settings.backend == "none":
        return None
    names = (
        (settings.backend,)
        if settings.backend != "auto"
        else _PREFERRED.get("linux" if platform.startswith("linux") else platform, ())
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


# ------------------------------------------------------------------ the notifier


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
