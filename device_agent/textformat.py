"""Plain-text output shared by the commands and the demo."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

# C0 controls (ESC among them), DEL and C1 controls: a terminal acts on them — retitles,
# clears, writes the clipboard — rather than showing them.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str, *, lines: bool = False) -> str:
    """Server or CLI text made safe for a terminal: control characters shown as `\\x1b`
    escapes. `lines` keeps newlines and tabs (a run's output). Never for --json output."""
    pattern = _CONTROL_BUT_LINES if lines else _CONTROL
    return pattern.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def duration(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f}s"


def when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def ago(ts: object) -> str:
    if not isinstance(ts, int | float):
        return "unknown time"
    return f"{int(time.time() - ts)} s ago"
