"""The owner's daily limit (issue 23): what a day adds up to, when a limit holds, the day
turning on the local calendar, the owner's override, and the per-run budget cap."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from device_agent.agent.daily_limit import MIN_BUDGET_USD, DailyLimit, spent
from device_agent.agent.journal import Journal
from device_agent.agent.journal_thread import AsyncJournal
from device_agent.agent.limits import (
    Reached,
    count,
    limit_report,
    next_midnight,
    reached_limit,
    usd,
)
from device_agent.agent.result import ExitReason, Report, failure
from device_agent.agent.usage import DayTotals, local_day
from device_agent.config import LimitSettings
from device_agent.executors.execconfig import capped_budget
from device_agent.executors.profiles import load_profiles

SERVER = "http://127.0.0.1:9"
T = TypeVar("T")


class Wall:
    """The owner's wall clock, set by the test."""

    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def noon() -> float:
    """Noon tomorrow, local time: a day with room on both sides."""
    return next_midnight(time.time()) + 12 * 3600


def ran(cost: float | None, tokens_in: int | None = 100, tokens_out: int | None = 10) -> Report:
    """The report of a CLI that ran and reported `cost` (None: no cost) and tokens."""
    usage = {"cost_usd": cost, "tokens_in": tokens_in, "tokens_out": tokens_out}
    details: dict[str, Any] = {"argv": ["claude", "-p"]}
    if (cost, tokens_in, tokens_out) != (None, None, None):
        details["usage"] = usage
    return Report("ok", None, 10, 0, None, ExitReason.OK, details)


def run(coro: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(coro())  # type: ignore[arg-type]


class Bench:
    def __init__(self, path: Path, limits: LimitSettings, at: float) -> None:
        self.path = path
        self.limits = limits
        self.wall = Wall(at)
        self.journal: AsyncJournal | None = None

    def open(self) -> DailyLimit:
        self.journal = AsyncJournal(Journal(self.path))
        return DailyLimit(self.limits, self.journal, clock=self.wall)

    def close(self) -> None:
        assert self.journal is not None
        self.journal.close()

    async def one_run(self, limit: DailyLimit, run_id: int, report: Report) -> None:
        limit.claimed(SERVER, run_id)
        await limit.round_started(SERVER, run_id, 1, "claude-code")
        await limit.round_finished(SERVER, run_id, 1, report)
        limit.run_ended(SERVER, run_id)


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return Bench(tmp_path / "journal.sqlite3", LimitSettings(daily_usd=1.0), noon())


def test_a_day_adds_up_its_runs_costs_and_tokens(bench: Bench) -> None:
    async def go() -> DayTotals:
        limit = bench.open()
        await limit.start()
        await bench.one_run(limit, 1, ran(0.25, 1000, 100))
        await bench.one_run(limit, 2, ran(0.5, 2000, 200))
        totals = limit.totals()
        bench.close()
        return totals

    totals = run(go)
    assert (totals.runs, totals.tokens_in, totals.tokens_out) == (2, 3000, 300)
    assert totals.cost_usd == pytest.approx(0.75)
    assert not totals.cost_partial


def test_a_cli_that_reports_no_cost_makes_the_dollar_total_partial(bench: Bench) -> None:
    async def go() -> DayTotals:
        limit = bench.open()
        await limit.start()
        await bench.one_run(limit, 1, ran(0.25))
        await bench.one_run(limit, 2, ran(None, 500, 50))  # Codex: tokens, no cost
        totals = limit.totals()
        bench.close()
        return totals

    totals = run(go)
    assert totals.runs == 2
    assert totals.cost_usd == pytest.approx(0.25)  # not guessed
    assert totals.cost_partial
    assert totals.unpriced_runs == 1
    assert totals.tokens == 100 + 10 + 500 + 50


def test_a_run_whose_cli_never_started_costs_nothing_known() -> None:
    assert spent(failure("codex binary not found on PATH")).cost_usd == 0.0
    assert spent(ran(None, None, None)).cost_usd is None  # it ran, and said nothing


def test_the_limit_holds_once_reached_and_is_said_once(bench: Bench) -> None:
    told: list[Reached] = []

    async def go() -> list[Reached | None]:
        limit = bench.open()
        limit.on_reached = told.append
        await limit.start()
        seen = [await limit.check()]
        await bench.one_run(limit, 1, ran(0.6))
        seen.append(await limit.check())
        await bench.one_run(limit, 2, ran(0.6))  # a run in flight finishes past the limit
        seen += [await limit.check(), await limit.check()]
        bench.close()
        return seen

    seen = run(go)
    assert seen[:2] == [None, None]
    reached = seen[2]
    assert reached is not None
    assert reached == seen[3]
    assert reached.kind == "usd"
    assert reached.message == "daily limit reached ($1.20 of $1.00); resumes at 00:00"
    assert told == [reached]  # one notification, however often the loop asks


def test_the_day_turning_lifts_the_limit(bench: Bench) -> None:
    async def go() -> tuple[Reached | None, Reached | None, DayTotals]:
        limit = bench.open()
        await limit.start()
        await bench.one_run(limit, 1, ran(1.5))
        before = await limit.check()
        bench.wall.at = next_midnight(bench.wall.at) + 1  # 00:00:01 local time
        after = await limit.check()
        totals = limit.totals()
        bench.close()
        return before, after, totals

    before, after, totals = run(go)
    assert before is not None
    assert after is None
    assert totals.runs == 0
    assert totals.day == local_day(bench.wall.at)


def test_a_restart_keeps_the_day_s_totals(bench: Bench) -> None:
    async def first() -> None:
        limit = bench.open()
        await limit.start()
        await bench.one_run(limit, 1, ran(0.7, 10, 1))
        await bench.one_run(limit, 2, ran(0.5, 20, 2))
        bench.close()

    async def second() -> tuple[DayTotals, Reached | None]:
        limit = bench.open()
        await limit.start()
        reached = await limit.check()
        totals = limit.totals()
        bench.close()
        return totals, reached

    run(first)
    totals, reached = run(second)
    assert (totals.runs, totals.tokens) == (2, 33)
    assert totals.cost_usd == pytest.approx(1.2)
    assert reached is not None
    assert reached.kind == "usd"


def test_a_round_cut_short_by_a_crash_counts_with_an_unknown_cost(bench: Bench) -> None:
    async def crashed() -> None:
        limit = bench.open()
        await limit.start()
        limit.claimed(SERVER, 1)
        await limit.round_started(SERVER, 1, 1, "claude-code")
        bench.close()  # killed while the CLI ran

    async def restarted() -> DayTotals:
        limit = bench.open()
        await limit.start()
        totals = limit.totals()
        bench.close()
        return totals

    run(crashed)
    totals = run(restarted)
    assert totals.runs == 1
    assert totals.cost_partial


def test_a_claimed_run_counts_before_its_cli_starts(tmp_path: Path) -> None:
    bench = Bench(tmp_path / "j.sqlite3", LimitSettings(daily_runs=1), noon())

    async def go() -> tuple[Reached | None, Reached | None]:
        limit = bench.open()
        await limit.start()
        limit.claimed(SERVER, 1)
        while_claimed = await limit.check()
        limit.run_ended(SERVER, 1)  # failed before any CLI started: it cost nothing
        after = await limit.check()
        bench.close()
        return while_claimed, after

    while_claimed, after = run(go)
    assert while_claimed is not None
    assert while_claimed.message.startswith("daily limit reached (1 of 1 runs)")
    assert after is None


def test_the_token_limit_counts_in_and_out(tmp_path: Path) -> None:
    bench = Bench(tmp_path / "j.sqlite3", LimitSettings(daily_tokens=100_000), noon())

    async def go() -> Reached | None:
        limit = bench.open()
        await limit.start()
        await bench.one_run(limit, 1, ran(None, 90_000, 30_000))
        reached = await limit.check()
        bench.close()
        return reached

    reached = run(go)
    assert reached is not None
    assert reached.amount == "120k of 100k tokens"


def test_going_past_the_limit_lasts_until_the_day_turns(bench: Bench) -> None:
    async def go() -> list[Any]:
        limit = bench.open()
        await limit.start()
        await bench.one_run(limit, 1, ran(1.5))
        seen: list[Any] = [await limit.check()]
        limit.go_past_today()
        seen += [await limit.check(), await limit.budget_left_usd(), limit.report()["past_limit"]]
        await bench.one_run(limit, 2, ran(0.7))
        bench.wall.at = next_midnight(bench.wall.at) + 60
        await bench.one_run(limit, 3, ran(1.1))  # a new day: the owner's word has lapsed
        seen += [await limit.check(), limit.past_limit]
        bench.close()
        return seen

    reached, after_override, budget, past, next_day, past_next_day = run(go)
    assert reached is not None
    assert after_override is None
    assert budget is None
    assert past is True
    assert next_day is not None
    assert past_next_day is False


def test_what_is_left_for_one_run(bench: Bench) -> None:
    async def go() -> list[float | None]:
        limit = bench.open()
        await limit.start()
        left = [await limit.budget_left_usd()]
        await bench.one_run(limit, 1, ran(0.4))
        left.append(await limit.budget_left_usd())
        await bench.one_run(limit, 2, ran(0.59999))
        left.append(await limit.budget_left_usd())
        bench.close()
        return left

    assert run(go) == [1.0, 0.6, MIN_BUDGET_USD]


def test_no_dollar_limit_leaves_the_budget_alone(tmp_path: Path) -> None:
    bench = Bench(tmp_path / "j.sqlite3", LimitSettings(daily_runs=5), noon())

    async def go() -> float | None:
        limit = bench.open()
        await limit.start()
        left = await limit.budget_left_usd()
        bench.close()
        return left

    assert run(go) is None


@pytest.mark.parametrize(
    ("asked", "left", "sent"),
    [
        (5, 0.6, 0.6),  # the server's budget is capped by what is left
        (0.25, 0.6, 0.25),  # a smaller one stands
        (None, 0.6, 0.6),  # none asked: what is left
        (5, None, 5),  # no dollar limit: the server's
        ("lots", 0.6, "lots"),  # not a number: refused later, by the profile's check
    ],
)
def test_the_per_run_budget_never_exceeds_what_is_left(
    asked: Any, left: float | None, sent: Any
) -> None:
    claude = load_profiles()["claude-code"]
    config = {"max_budget_usd": asked} if asked is not None else {}
    assert capped_budget(claude, config, left).get("max_budget_usd") == sent


def test_a_cli_without_a_budget_flag_gets_none() -> None:
    codex = load_profiles()["codex"]
    assert capped_budget(codex, {"model": "m"}, 0.5) == {"model": "m"}


def test_the_report_status_shows() -> None:
    now = noon()
    totals = DayTotals(local_day(now), runs=3, cost_usd=1.25, unpriced_runs=1)
    report = limit_report(LimitSettings(daily_usd=1.0, daily_runs=10), totals, now)
    assert report["reached"] == "daily limit reached ($1.25 of $1.00); resumes at 00:00"
    assert report["resumes_at"] == next_midnight(now)
    assert report["today"]["cost_partial"] is True
    assert report["limits"] == {"daily_usd": 1.0, "daily_tokens": None, "daily_runs": 10}
    assert limit_report(LimitSettings(), totals, now)["reached"] is None  # all off


def test_no_limit_is_ever_reached_when_none_is_set() -> None:
    totals = DayTotals("2026-12-08", runs=10**6, cost_usd=1e6, tokens_in=10**12)
    assert reached_limit(LimitSettings(), totals, noon()) is None


def test_amounts_read_as_a_person_reads_them() -> None:
    assert usd(5.0234) == "$5.02"
    assert usd(0.0042) == "$0.0042"
    assert usd(0) == "$0.00"
    assert [count(n) for n in (950, 12_500, 1_200_000)] == ["950", "12.5k", "1.2M"]


# ------------------------------------------------------------- config and journal


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ("daily_usd = 0", "limits.daily_usd must be a number of US dollars greater than 0"),
        ("daily_usd = nan", "limits.daily_usd must be a number of US dollars"),
        ("daily_runs = 1.5", "limits.daily_runs must be a whole number of runs from 1"),
        ("daily_tokens = -3", "limits.daily_tokens must be a whole number of tokens from 1"),
        ("daily_dollars = 3", "unknown setting 'limits.daily_dollars'"),
    ],
)
def test_a_wrong_limit_stops_the_agent_naming_the_key(
    tmp_path: Path, table: str, says: str
) -> None:
    from device_agent.config import ConfigError, load

    config = tmp_path / "config.toml"
    config.write_text(f"[limits]\n{table}\n")
    with pytest.raises(ConfigError, match=re.escape(says)):
        load(env={"DEVICE_AGENT_HOME": str(tmp_path)}, config_path=config)


def test_limits_are_all_off_unless_set(tmp_path: Path) -> None:
    from device_agent.config import load

    settings = load(env={"DEVICE_AGENT_HOME": str(tmp_path)})
    assert settings.limits == LimitSettings()
    assert not settings.limits.any


def test_a_journal_made_before_the_usage_table_gets_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    Journal(path).close()
    old = sqlite3.connect(path)  # as a journal of a release before the usage table left it
    old.execute("DROP TABLE usage")
    old.commit()
    old.close()
    journal = Journal(path)
    try:
        journal.usage.start_round(SERVER, 1, 1, day="2026-12-08", started_at=1.0, agent_kind=None)
        assert journal.usage.day_totals("2026-12-08").runs == 1
    finally:
        journal.close()


def test_with_no_limit_set_a_check_adds_nothing_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = Bench(tmp_path / "j.sqlite3", LimitSettings(), noon())
    added: list[str] = []

    async def go() -> tuple[bool, bool, Reached | None, int]:
        limit = bench.open()
        await limit.start()
        await bench.one_run(limit, 1, ran(0.5))
        monkeypatch.setattr(limit, "totals", lambda: added.append("totals"))
        reached = await limit.check()
        assert bench.journal is not None
        other = DailyLimit(LimitSettings(daily_runs=5), bench.journal)
        bench.close()
        return limit.limited, other.limited, reached, len(added)

    assert run(go) == (False, True, None, 0)
