"""Times and windows as the real server computes them: periods of a schedule, wire spellings."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from device_agent.devserver.state.records import iso


def iso_dt(moment: datetime) -> str:
    return iso(moment.timestamp())


def normal_time(text: str) -> str:
    # The unique key compares timestamps, not their spelling.
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        return text


def wire_time(value: object) -> object:
    """A datetime as an ISO string; any other value verbatim (tests send malformed windows)."""
    return iso_dt(value) if isinstance(value, datetime) else value


def current_period(now: float, schedule: str | None) -> tuple[datetime, timedelta]:
    """The start of the period `now` falls in, and the period's length."""
    moment = datetime.fromtimestamp(now, UTC)
    period = schedule_period(schedule)
    if period == timedelta(hours=1):
        return moment.replace(minute=0, second=0, microsecond=0), period
    return moment.replace(hour=0, minute=0, second=0, microsecond=0), period


def period_window(now: float, schedule: str | None) -> tuple[str, str]:
    """The window of the period `now` falls in: what a scheduled run gets."""
    start, period = current_period(now, schedule)
    return iso_dt(start), iso_dt(start + period)


def last_full_period(now: float, schedule: str | None) -> tuple[str, str]:
    """The window of the period before the current one."""
    start, period = current_period(now, schedule)
    return iso_dt(start - period), iso_dt(start)


def slugify(name: str) -> str:
    """The slug a real server derives from a name when none is given."""
    return "-".join(re.findall(r"[a-z0-9]+", name.lower())) or "watcher"


def schedule_period(schedule: str | None) -> timedelta:
    """The window length of a watcher: 7 days unscheduled, else what its cron repeats at.

    Only the shapes the dev server is given are told apart: hourly
    (`M * * * *`), weekly (a day-of-week) and daily (anything else).
    """
    if schedule is None:
        return timedelta(days=7)
    fields = schedule.split()
    if len(fields) == 5 and fields[1] == "*":
        return timedelta(hours=1)
    if len(fields) == 5 and fields[4] != "*":
        return timedelta(days=7)
    return timedelta(days=1)
