"""Capturing what the agent logs, as the fields of each line."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from device_agent.logs import fields_of


@contextlib.contextmanager
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    """Every line logged meanwhile, at any level, as its fields (event, level, logger, …)."""
    lines: list[dict[str, Any]] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(fields_of(record))

    root = logging.getLogger()
    capture, level = Capture(logging.DEBUG), root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(capture)
        root.setLevel(level)
