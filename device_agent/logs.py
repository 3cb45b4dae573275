"""Logging: events with fields, as JSON lines in the log file and readable lines on the
terminal, secrets redacted.

A module logs through `log = get_logger(__name__)`, as `log.info("run finished",
run_id=3)`. Events travel as stdlib `logging` records, so the lines of other libraries
(httpx, asyncio) are rendered, redacted and filed the same way. This small layer replaced
structlog, whose import alone cost `run` ~12 ms of its start.

Redaction happens on the rendered line, after the exception is formatted, so nothing —
not even a traceback that quoted a header — reaches a handler with a token in it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from device_agent.redaction import Redactor

redactor: Final = Redactor()


_FIELDS: Final = "device_agent_fields"  # the record attribute a line's fields travel in
_NONE: Final[Mapping[str, Any]] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("device_agent_log_context", default=_NONE)


def bind_to_context(**fields: Any) -> None:
    """Fields that every line logged from here on in this task (or thread) carries."""
    _context.set({**_context.get(), **fields})


class Logger:
    """Logs events with fields: `log.warning("poll failed", status=503)`."""

    __slots__ = ("_fields", "_logger")

    def __init__(self, logger: logging.Logger, fields: Mapping[str, Any] | None = None) -> None:
        self._logger = logger
        self._fields = fields or _NONE

    def bind(self, **fields: Any) -> Logger:
        """This logger with `fields` on each of its lines."""
        return Logger(self._logger, {**self._fields, **fields})

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        """`exc_info=` an exception adds its traceback, as in `logging`."""
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An error line with the traceback of the exception being handled."""
        fields.setdefault("exc_info", True)
        self._log(logging.ERROR, event, fields)

    def _log(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if not self._logger.isEnabledFor(level):
            return
        exc_info = fields.pop("exc_info", None)
        line = {**_context.get(), **self._fields, **fields}
        self._logger.log(level, event, exc_info=exc_info, stacklevel=3, extra={_FIELDS: line})


def get_logger(name: str) -> Logger:
    return Logger(logging.getLogger(name))


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """What a record's line says: its fields, then event, level, logger and timestamp (which
    no field overrides). Another library's record takes the fields of the context it was
    logged in: handlers run in the logging call."""
    fields = getattr(record, _FIELDS, None)
    line = dict(_context.get() if fields is None else fields)
    line.update(
        event=record.getMessage(),
        level=record.levelname.lower(),
        logger=record.name,
        timestamp=_iso_utc(record.created),
    )
    return line


def _iso_utc(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1_000_000):06d}Z"


class JsonLines(logging.Formatter):
    """One JSON object per line (`device-agent logs` reads them); a traceback goes in
    "exception"."""

    def format(self, record: logging.LogRecord) -> str:
        line = fields_of(record)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return redactor(json.dumps(line, default=repr))


class ReadableLines(logging.Formatter):
    """`time [level] event [logger] key=value …`, the level in colour on a terminal."""

    _COLORS: Final = {"debug": "34", "info": "32", "warning": "33", "error": "31"}

    def __init__(self, *, colors: bool = False) -> None:
        super().__init__()
        self.colors = colors

    def format(self, record: logging.LogRecord) -> str:
        line = fields_of(record)
        stamp, level = line.pop("timestamp"), line.pop("level")
        event, logger = line.pop("event"), line.pop("logger")
        pairs = " ".join(f"{key}={_readable(value)}" for key, value in sorted(line.items()))
        text = f"{event:<30} [{logger}] {pairs}".rstrip()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        tag = f"[{level:<9}]"
        if self.colors:  # around the tag alone: a colour code inside would hide a token
            tag = f"\x1b[{self._COLORS.get(level, '31;1')}m{tag}\x1b[0m"
        return f"{stamp} {tag} {redactor(text)}"


def _readable(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def setup(
    *,
    log_file: Path | None,
    console_level: int = logging.INFO,
    file_level: int = logging.DEBUG,
    secrets: Iterable[str | None] = (),
    console_stream: Any = None,
) -> None:
    """Send every logger's lines to the terminal and the log file (again: the handlers are
    replaced)."""
    redactor.add(*secrets)
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
        console.setFormatter(ReadableLines(colors=colors))
        root.addHandler(console)

    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        to_file = RotatingFile(log_file, max_bytes=5 * 1024 * 1024, keep=3)
        to_file.setLevel(file_level)
        to_file.setFormatter(JsonLines())
        root.addHandler(to_file)

    # httpx logs every request at INFO; that is noise on a laptop that polls all day.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # asyncio's "Using selector: EpollSelector" at DEBUG on every start tells a user nothing.
    logging.getLogger("asyncio").setLevel(logging.INFO)


class RotatingFile(logging.FileHandler):
    """The log file, moved to `<name>.1` (and older ones up to `<name>.<keep>`) once it has
    reached `max_bytes`. Ours rather than the stdlib's RotatingFileHandler, which renders
    every line twice (once only to learn its length), checks the path with two stats, and
    costs start-up ~4 ms of imports (`logging.handlers`)."""

    def __init__(self, path: Path, *, max_bytes: int, keep: int) -> None:
        super().__init__(path, encoding="utf-8")
        self.max_bytes = max_bytes
        self.keep = keep

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self._full():
                self._rotate()
        except OSError:  # a failed rename: keep writing to the file we have
            self.handleError(record)
        super().emit(record)

    def _full(self) -> bool:
        if self.stream is None:
            return False
        try:
            return os.fstat(self.stream.fileno()).st_size >= self.max_bytes
        except (OSError, ValueError):  # closed or not a real file: nothing to rotate
            return False

    def _rotate(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None  # FileHandler.emit opens the new file
        for n in range(self.keep, 0, -1):  # `<name>.<keep>` is overwritten: the oldest goes
            older = f"{self.baseFilename}.{n - 1}" if n > 1 else self.baseFilename
            if os.path.exists(older):
                os.replace(older, f"{self.baseFilename}.{n}")


def _discarded(stream: Any) -> bool:
    """Whether `stream` is /dev/null (e.g. a service whose stderr nobody reads)."""
    try:
        return os.path.samestat(os.fstat(stream.fileno()), os.stat(os.devnull))
    except (AttributeError, OSError, ValueError):  # no file descriptor: a real stream
        return False
