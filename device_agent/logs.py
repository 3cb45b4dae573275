"""structlog setup: JSON lines to the log file, readable lines on the terminal, secrets redacted.

Redaction happens on the rendered line, after every processor and exception
formatter has run, so nothing — not even a traceback that quoted a header —
reaches a handler with a token in it.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

import structlog

from device_agent.redaction import REDACTED, SecretValues

# Each token shape, with a word it cannot match without (lower case): a line without the
# word skips the pattern's scan, and most lines have none of the words.
_PATTERNS: Final = (
    ("owl_pat_", re.compile(r"owl_pat_[A-Za-z0-9_-]{8,}")),
    ("bearer", re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")),
    (
        "token",
        re.compile(
            r"""(?i)(["']?(?:access_token|refresh_token|device_token|token)["']?\s*[:=]\s*["']?)"""
            r"""[^"',\s}]{8,}"""
        ),
    ),
)


class Redactor:
    """Replaces known secret values and, in log lines only, token-shaped strings."""

    def __init__(self) -> None:
        self._values = SecretValues()

    def add(self, *secrets: str | None) -> None:
        self._values.add(*secrets)

    def __call__(self, text: str) -> str:
        text = self._values.text(text)
        lowered = text.lower()
        for word, pattern in _PATTERNS:
            if word in lowered:
                text = pattern.sub(_keep_prefix, text)
        return text


def _keep_prefix(match: re.Match[str]) -> str:
    prefix = match.group(1) if match.groups() else ""
    return f"{prefix}{REDACTED}"


redactor: Final = Redactor()


def _redacting(renderer: Callable[..., Any]) -> Callable[..., str]:
    def render(logger: Any, method: str, event_dict: Any) -> str:
        return redactor(str(renderer(logger, method, event_dict)))

    return render


_SHARED: Final[list[Any]] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def setup(
    *,
    log_file: Path | None,
    console_level: int = logging.INFO,
    file_level: int = logging.DEBUG,
    secrets: Iterable[str | None] = (),
    console_stream: Any = None,
) -> None:
    """Configure structlog and stdlib logging once per process."""
    redactor.add(*secrets)
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(min(console_level, file_level))

    stream = console_stream if console_stream is not None else sys.stderr
    if not _discarded(stream):  # rendering every line for /dev/null is work for nothing
        console = logging.StreamHandler(stream)
        console.setLevel(console_level)
        colors = bool(getattr(stream, "isatty", lambda: False)())
        console.setFormatter(_formatter(structlog.dev.ConsoleRenderer(colors=colors)))
        root.addHandler(console)

    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        to_file = _RotatingFile(log_file, maxBytes=5 * 1024 * 1024, backupCount=3, encoding="utf-8")
        to_file.setLevel(file_level)
        to_file.setFormatter(
            _formatter(structlog.processors.JSONRenderer(), structlog.processors.format_exc_info)
        )
        root.addHandler(to_file)

    # httpx logs every request at INFO; that is noise on a laptop that polls all day.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # asyncio's "Using selector: EpollSelector" at DEBUG on every start tells a user nothing.
    logging.getLogger("asyncio").setLevel(logging.INFO)


class _RotatingFile(logging.handlers.RotatingFileHandler):
    """Rotates once the file has reached its size. The stdlib handler instead renders every
    line twice — once only to learn its length — and checks the path with two stats."""

    def shouldRollover(self, record: logging.LogRecord) -> int:
        if self.stream is None or self.maxBytes <= 0:
            return False
        try:
            return os.fstat(self.stream.fileno()).st_size >= self.maxBytes
        except (OSError, ValueError):  # closed or not a real file: nothing to rotate
            return False


def _discarded(stream: Any) -> bool:
    """Whether `stream` is /dev/null (e.g. a service whose stderr nobody reads)."""
    try:
        return os.path.samestat(os.fstat(stream.fileno()), os.stat(os.devnull))
    except (AttributeError, OSError, ValueError):  # no file descriptor: a real stream
        return False


def _formatter(renderer: Any, *extra: Any) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *extra,
            _redacting(renderer),
        ],
    )
