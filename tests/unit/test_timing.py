"""Backoff, wakeable sleeps and sleep detection — with injected clocks, never real waiting."""

from __future__ import annotations

import asyncio
import contextlib
import random

from device_agent.agent.alarm import Alarm
from device_agent.agent.backoff import Backoff
from device_agent.agent.sleepwatch import watch_for_sleep
from tests.support.clock import FakeClock


def test_backoff_grows_is_capped_and_resets() -> None:
    backoff = Backoff(base=1, cap=60, rng=random.Random(1))
    delays = [backoff.next() for _ in range(12)]
    assert all(0.5 <= d <= 60 for d in delays)
    assert delays[-1] >= 30  # full jitter stays within [cap/2, cap] once capped
    assert max(delays[:3]) <= 4
    backoff.reset()
    assert backoff.next() <= 1


def test_backoff_honours_retry_after_but_caps_it() -> None:
    backoff = Backoff(base=1, cap=60, rng=random.Random(1))
    assert backoff.next(retry_after=17) >= 17
    assert backoff.next(retry_after=10_000) == 60  # the owner's max_backoff_seconds


def test_alarm_ring_before_sleep_is_not_lost() -> None:
    async def go() -> tuple[bool, bool]:
        alarm = Alarm()
        alarm.ring()
        first = await alarm.sleep(3600)
        second = await alarm.sleep(0)
        return first, second

    assert asyncio.run(go()) == (True, False)


def test_alarm_rearm_forgets_old_rings() -> None:
    async def go() -> bool:
        alarm = Alarm()
        alarm.ring()
        alarm.rearm()
        return await alarm.sleep(0.01)

    assert asyncio.run(go()) is False


def test_alarm_wakes_a_sleeper() -> None:
    async def go() -> bool:
        alarm = Alarm()
        sleeper = asyncio.create_task(alarm.sleep(3600))
        await asyncio.sleep(0)
        alarm.ring()
        return await asyncio.wait_for(sleeper, timeout=5)

    assert asyncio.run(go()) is True


def wakes_seen(extra_wall_time: dict[int, float], ticks: int = 6) -> list[float]:
    """Run the watcher for `ticks` fake 5 s ticks, adding wall-only time at the given ticks."""
    clock = FakeClock()
    wakes: list[float] = []
    count = 0

    async def fake_sleep(seconds: float) -> None:
        nonlocal count
        count += 1
        await clock.sleep(seconds)
        clock.suspend(extra_wall_time.get(count, 0.0))
        if count == ticks:
            raise asyncio.CancelledError

    async def go() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await watch_for_sleep(
                wakes.append, interval=5, threshold=30, clock=clock, sleep=fake_sleep
            )

    asyncio.run(go())
    return wakes


def test_clock_jump_is_reported_as_a_wake() -> None:
    assert wakes_seen({3: 3600.0}) == [3600.0]  # the lid was closed for an hour


def test_small_drift_is_not_a_wake() -> None:
    assert wakes_seen(dict.fromkeys(range(1, 7), 2.0)) == []  # NTP slew, a busy machine
