"""Sleeps that can be cut short: by "Run now", a wake from sleep, or a shutdown."""

from __future__ import annotations

import asyncio


class Alarm:
    def __init__(self) -> None:
        self._sleepers: set[asyncio.Event] = set()
        self._rang = False

    def ring(self) -> None:
        """Wake every sleeper now, and the next one to sleep (a ring mid-request is not lost)."""
        self._rang = True
        for sleeper in self._sleepers:
            sleeper.set()

    def rearm(self) -> None:
        """Forget earlier rings (call right before doing the work a ring asks for)."""
        self._rang = False

    async def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`. True if woken early."""
        if self._rang:
            self._rang = False
            return True
        if seconds <= 0:
            return False
        sleeper = asyncio.Event()
        self._sleepers.add(sleeper)
        try:
            await asyncio.wait_for(sleeper.wait(), timeout=seconds)
        except TimeoutError:
            return False
        finally:
            self._sleepers.discard(sleeper)
        self._rang = False
        return True
