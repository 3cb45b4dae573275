"""The owner's daily limit: no server can spend more of the owner's money or quota than they allow.

Every run a server pins to this device is paid by its owner. `[limits]` in the
config (`daily_usd`, `daily_tokens`, `daily_runs`, each off unless set) caps a
local calendar day; nothing a server sends can raise it. The day's totals come
from the journal's `usage` table (`device_agent.agent.usage`), so a restart
keeps them, and are kept up to date in memory as rounds start and end.

At the limit the device stops taking work, and says so once (one log line, one
desktop notification): the poll loop claims nothing new until the day turns
(docs/protocol.md, "The owner's daily limit"). A run already claimed is
finished, never killed. The owner may go on past it on purpose until the day
turns (`device-agent resume --past-limit`); a raised limit and a restart do too.

Costs are what the CLIs report; one that reports none counts towards the run and
token limits only, and the day's dollar total says it is partial. No price table.
The server's per-run `max_budget_usd` is capped by what is left of `daily_usd`
for a CLI with a per-run budget flag (`execconfig.capped_budget`).

This module is the rule and its report: when a limit is reached, and what
`status` says of the day. The daemon keeps the day's count with
`agent.daily_limit.DailyLimit`; `status` reads the totals from the journal and
the report from here, without the daemon's loop or logging.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import Any

from device_agent.agent.usage import DayTotals
from device_agent.config import LimitSettings


def next_midnight(epoch: float) -> float:
    """The start of the local calendar day after the one `epoch` is in."""
    today = datetime.datetime.fromtimestamp(epoch).date()
    return datetime.datetime.combine(
        today + datetime.timedelta(days=1), datetime.time()
    ).timestamp()


@dataclass(frozen=True)
class Reached:
    """Which daily limit is reached, by how much, and when the day turns."""

    kind: str  # "usd", "tokens" or "runs"
    used: float
    limit: float
    resumes_at: float  # epoch seconds of the next local midnight

    @property
    def amount(self) -> str:
        """What of which limit: "$5.02 of $5.00", "120k of 100k tokens", "20 of 20 runs"."""
        if self.kind == "usd":
            return f"{usd(self.used)} of {usd(self.limit)}"
        noun = "tokens" if self.kind == "tokens" else "runs"
        return f"{count(self.used)} of {count(self.limit)} {noun}"

    @property
    def message(self) -> str:
        resumes = time.strftime("%H:%M", time.localtime(self.resumes_at))
        return f"daily limit reached ({self.amount}); resumes at {resumes}"


def reached_limit(limits: LimitSettings, totals: DayTotals, now: float) -> Reached | None:
    """The first of the owner's limits that `totals` reach, or None."""
    resumes = next_midnight(now)
    checks: tuple[tuple[str, float, float | None], ...] = (
        ("usd", totals.cost_usd, limits.daily_usd),
        ("tokens", float(totals.tokens), limits.daily_tokens),
        ("runs", float(totals.runs), limits.daily_runs),
    )
    for kind, used, limit in checks:
        if limit is not None and used >= limit:
            return Reached(kind, used, float(limit), resumes)
    return None


def limit_report(
    limits: LimitSettings,
    totals: DayTotals,
    now: float,
    *,
    past_limit: bool = False,
) -> dict[str, Any]:
    """What `status` shows of the day: its totals, the limits, and whether one is reached
    (`resumes_at` in epoch seconds)."""
    reached = reached_limit(limits, totals, now)
    return {
        "today": totals.as_dict(),
        "limits": {
            "daily_usd": limits.daily_usd,
            "daily_tokens": limits.daily_tokens,
            "daily_runs": limits.daily_runs,
        },
        "reached": reached.message if reached and not past_limit else None,
        "past_limit": past_limit,
        "resumes_at": next_midnight(now) if reached or past_limit else None,
    }


def usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def plural(n: int, noun: str) -> str:
    """A count and its noun: "1 run", "3 runs", "1,200 tokens"."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def count(value: float) -> str:
    """A count as a person reads it: 950, 12.5k, 1.2M."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.0f}"
