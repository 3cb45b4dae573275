"""Waiting for a condition with a deadline: no test sleeps a fixed time.

A test waits for what it needs and fails with a message naming it when the deadline
passes (a deadline is a bound on failure, never an assertion about speed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

_STEP = 0.01


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 15.0, what: str = "condition"
) -> Any:
    """Poll `condition` until it is truthy and return its value; fail after `timeout` s."""
    deadline = _Deadline(timeout, what)
    while not (value := condition()):
        deadline.check()
        time.sleep(_STEP)
    return value


async def wait_for_async(
    condition: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition"
) -> Any:
    """`wait_for` inside an event loop: the loop keeps running while we wait."""
    deadline = _Deadline(timeout, what)
    while not (value := condition()):
        deadline.check()
        await asyncio.sleep(_STEP)
    return value


class _Deadline:
    def __init__(self, timeout: float, what: str) -> None:
        self.at = time.monotonic() + timeout
        self.message = f"timed out after {timeout} s waiting for {what}"

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise AssertionError(self.message)
