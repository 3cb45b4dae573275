"""Whether a finished run is worth a notification: a policy that respects the user's attention.

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
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from device_agent.desktop.notify.config import PRIORITIES, NotificationSettings, TargetSetting

NOTIFYING_CHANNELS: Final = ("notification", "both")
MAX_TITLE: Final = 64
MAX_BODY: Final = 200


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
