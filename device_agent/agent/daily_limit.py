"""The daily limit as the running agent keeps it (`DailyLimit`): the day's usage in memory,
every change written to the journal before it counts; the poll loop asks it before each
claim, the pipeline tells it of each round and asks it for a run's dollar budget.

What the limit is and when it is reached is `agent.limits`; this module adds the
running count, the owner's override for the day, and saying once a day, in the log and
through a listener (a desktop notification), that the limit holds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Final

from device_agent.agent.journal_thread import AsyncJournal
from device_agent.agent.limits import Reached, limit_report, next_midnight, reached_limit
from device_agent.agent.result import Report
from device_agent.agent.usage import (
    KEEP_DAYS,
    DayTotals,
    RoundKey,
    RunKey,
    UsageRow,
    local_day,
    totals_of,
)
from device_agent.config import LimitSettings
from device_agent.executors.readers import Usage
from device_agent.logs import get_logger

log = get_logger(__name__)

RECHECK_SECONDS: Final = 60.0  # at the limit, how often the wall clock is asked for the day
MIN_BUDGET_USD: Final = 0.0001  # a per-run budget is never rounded down to nothing


def spent(report: Report) -> Usage:
    """What a round cost, from its report: the CLI's own `usage` detail; nothing known when
    its CLI ran and reported nothing; 0 when no CLI started (the executor puts `argv` in the
    details only once one did)."""
    usage = Usage.from_detail(report.details.get("usage"))
    if usage is not None:
        return usage
    if "argv" in report.details:
        return Usage()
    return Usage(cost_usd=0.0, tokens_in=0, tokens_out=0)


class DailyLimit:
    """Today's usage and the owner's limits, for the poll loop and the run pipeline.

    The day's rows live in memory (loaded from the journal at start and whenever the
    day turns) and every change is written to the journal before it counts.
    """

    def __init__(
        self,
        settings: LimitSettings,
        journal: AsyncJournal,
        *,
        clock: Callable[[], float] = time.time,
        recheck_seconds: float = RECHECK_SECONDS,
    ) -> None:
        self.settings = settings
        self._journal = journal
        self._clock = clock
        self.recheck_seconds = recheck_seconds
        self._day: str | None = None
        self._rows: dict[RoundKey, UsageRow] = {}  # the day's rounds
        self._started: dict[RoundKey, UsageRow] = {}  # rounds whose CLI runs, any day
        self._pending: set[RunKey] = set()  # claimed; no CLI started yet
        self._past_day: str | None = None  # the owner said go on past the limit on this day
        self._told_day: str | None = None  # the day the limit was announced
        self.reached: Reached | None = None  # as the last check found it
        # Told once a day, when the limit is first found reached (a desktop notification).
        self.on_reached: Callable[[Reached], None] | None = None

    @property
    def limited(self) -> bool:
        """Whether the owner set any daily limit. Without one a check adds nothing up: the
        day's totals, a pass over each of its rounds, would be done before every poll."""
        s = self.settings
        return s.daily_usd is not None or s.daily_tokens is not None or s.daily_runs is not None

    @property
    def past_limit(self) -> bool:
        return self._past_day is not None and self._past_day == self._day

    async def start(self) -> None:
        """Forget rows of runs the journal no longer keeps, and load today's."""
        before = self._clock() - KEEP_DAYS * 86400
        await self._journal.write_or_defer(self._journal.sync.usage.prune, before)
        await self._today()

    def totals(self) -> DayTotals:
        return totals_of(
            self._day or local_day(self._clock()),
            self._rows.values(),
            in_flight=self._started,
            pending=self._pending,
        )

    async def check(self) -> Reached | None:
        """Whether a limit is reached now (None: runs may be claimed). Said once a day."""
        day = await self._today()
        reached = None
        if self._past_day != day and self.limited:
            reached = reached_limit(self.settings, self.totals(), self._clock())
        if reached is not None and self._told_day != day:
            self._told_day = day
            log.warning(
                "daily limit reached: no new runs until the day turns; "
                "`device-agent resume --past-limit` goes on today",
                limit=reached.message,
            )
            self._tell(reached)
        elif reached is None and self.reached is not None:
            log.info("taking runs again: the daily limit no longer holds", day=day)
        self.reached = reached
        return reached

    def until_recheck(self) -> float:
        """How long the loop may wait before asking again: until midnight, or less."""
        now = self._clock()
        return max(0.0, min(self.recheck_seconds, next_midnight(now) - now))

    def go_past_today(self) -> None:
        """The owner's word: take runs past the limit until the day turns."""
        day = local_day(self._clock())
        if self._past_day != day:
            log.warning("the owner lifted the daily limit until the day turns", day=day)
        self._past_day = day
        self.reached = None

    async def budget_left_usd(self) -> float | None:
        """What is left of today's dollar limit for one run (None: no such limit now), never
        below `MIN_BUDGET_USD`, rounded down to 1/10000 of a dollar."""
        day = await self._today()
        limit = self.settings.daily_usd
        if limit is None or self._past_day == day:
            return None
        left = limit - self.totals().cost_usd
        # Rounded first so that float noise (1 - 0.4842 = 0.51579999...) loses no cent.
        return max(MIN_BUDGET_USD, math.floor(round(left * 10_000, 6)) / 10_000)

    # ------------------------------------------------------------- runs

    def claimed(self, server: str, run_id: int) -> None:
        """A run was claimed: it counts from now, before its CLI starts."""
        self._pending.add((server, run_id))

    def run_ended(self, server: str, run_id: int) -> None:
        """The run is over; a run that never started a CLI stops counting."""
        self._pending.discard((server, run_id))

    async def round_started(
        self, server: str, run_id: int, round_: int, agent_kind: str | None
    ) -> None:
        """A round's CLI is about to start: written first, so that a crash still counts it."""
        day = await self._today()
        row = UsageRow(
            server, run_id, round_, day, self._clock(), agent_kind, False, None, None, None
        )
        self._started[row.key] = row
        await self._journal.write_or_defer(
            self._journal.sync.usage.start_round,
            server,
            run_id,
            round_,
            day=day,
            started_at=row.started_at,
            agent_kind=agent_kind,
        )
        if self._day == day:
            self._rows[row.key] = row
        self._pending.discard(row.run)

    async def round_finished(self, server: str, run_id: int, round_: int, report: Report) -> Usage:
        """A round's CLI ended: what it cost is written, and counts. Returns it."""
        usage = spent(report)
        row = self._started.pop((server, run_id, round_), None)
        if row is None:
            return usage
        await self._journal.write_or_defer(
            self._journal.sync.usage.finish_round,
            server,
            run_id,
            round_,
            cost_usd=usage.cost_usd,
            tokens_in=usage.tokens_in,
            tokens_out=usage.tokens_out,
        )
        if self._day == row.day:
            self._rows[row.key] = replace(
                row,
                finished=True,
                cost_usd=usage.cost_usd,
                tokens_in=usage.tokens_in,
                tokens_out=usage.tokens_out,
            )
        return usage

    def report(self) -> dict[str, Any]:
        """`limit_report` of now, for the control socket's `status`."""
        return limit_report(self.settings, self.totals(), self._clock(), past_limit=self.past_limit)

    # ------------------------------------------------------------ inside

    async def _today(self) -> str:
        """Today's date; when the day turned since last asked, its rows from the journal."""
        day = local_day(self._clock())
        if day != self._day:
            rows = await self._journal.call(self._journal.sync.usage.day_rows, day)
            if self._day is not None:
                log.info("a new day: the daily limit starts afresh", day=day)
            self._day = day
            self._rows = {row.key: row for row in _merged(rows, self._started.values(), day)}
        return day

    def _tell(self, reached: Reached) -> None:
        if self.on_reached is None:
            return
        try:
            self.on_reached(reached)
        except Exception:  # a listener's bug must not keep the limit from holding
            log.exception("a daily-limit listener failed")


def _merged(rows: Iterable[UsageRow], started: Iterable[UsageRow], day: str) -> list[UsageRow]:
    """The journal's rows of `day`, with the rounds this agent has running (whose start may
    not be written yet) added."""
    found = {row.key: row for row in rows}
    for row in started:
        if row.day == day:
            found.setdefault(row.key, row)
    return list(found.values())
