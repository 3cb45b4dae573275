"""Plain-text output shared by the commands and the demo: tables, times, safe text, and the
one-line error every command prints on stderr."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime


def fail(message: str) -> None:
    print(f"device-agent: {message}", file=sys.stderr)


# C0 controls (ESC among them), DEL and C1 controls: a terminal acts on them — retitles,
# clears, writes the clipboard — rather than showing them.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str, *, lines: bool = False) -> str:
    """Server or CLI text made safe for a terminal: control characters shown as `\\x1b`
    escapes. `lines` keeps newlines and tabs (a run's output). Never for --json output."""
    pattern = _CONTROL_BUT_LINES if lines else _CONTROL
    return pattern.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


# A terminal escape sequence (colours, cursor moves): noise in a live output tail.
_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")


def plain(text: str) -> str:
    """A CLI's live output for a status line: escape sequences dropped (a coloured progress
    line stays readable), any other control character shown as by `printable`."""
    return printable(_ESCAPE_SEQUENCE.sub("", text), lines=True)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def duration(ms: int | None) -> str:
    return "-" if ms is None else elapsed(ms / 1000)


def elapsed(seconds: float) -> str:
    """3.2s, 4m 05s, 2h 10m."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def when(ts: float | None) -> str:
    """Local time, to the second: what a person reads in a table."""
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def ago(moment: str | float | None) -> str:
    """ "12s ago (2026-11-30 08:40:01)" for an ISO time or epoch seconds; "never" for None."""
    if moment is None:
        return "never"
    epoch = datetime.fromisoformat(moment).timestamp() if isinstance(moment, str) else moment
    return f"{elapsed(max(0.0, time.time() - epoch))} ago ({when(epoch)})"


def iso(epoch: float | None) -> str | None:
    """Epoch seconds as an ISO 8601 UTC time, the form every `--json` output uses."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
