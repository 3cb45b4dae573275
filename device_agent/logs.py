"""Logging on structlog: JSON lines in the log file, readable lines on the terminal, secrets
redacted.

A module logs through `log = get_logger(__name__)`, as `log.info("run finished", run_id=3)`;
`structlog.contextvars.bind_contextvars(run_id=3)` puts a field on every line the current
task logs from then on (and on no other task's lines: each asyncio task has its own context).
Events travel as stdlib `logging` records, so other libraries' lines (httpx, asyncio) are
rendered, redacted and filed the same way, with the context they were logged in.

Every line carries `event`, `level`, `logger` and `timestamp` (UTC, ISO 8601), which no field
overrides, and a traceback goes whole into `exception`: `device-agent logs` reads these keys.

Redaction is the last step, on the fully rendered line (traceback included), so nothing —
not even a traceback that quoted a header — reaches a handler with a token in it.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import Iterable
from io import StringIO
from pathlib import Path
from typing import IO, Any, Final, TextIO

import structlog
from structlog.dev import Column, ConsoleRenderer, KeyValueColumnFormatter, LogLevelColumnFormatter
from structlog.typing import ExcInfo, Processor, WrappedLogger

from device_agent.cli.output import printable
from device_agent.redaction import redactor as redactor  # every line is cleaned of its secrets

MAX_BYTES: Final = 5 * 1024 * 1024  # the log file rotates once it would grow past this
KEEP: Final = 3  # rotations kept beside it: agent.log.1 (newest) … agent.log.3

# What every line gets, ours at the logging call and other libraries' in the handler (which
# runs in the logging call too, so both see the context of the task that logged). After the
# fields, so that none of them replaces a fixed key.
_STAMPS: Final[list[Processor]] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]

structlog.configure(
    processors=[
        structlog.stdlib.filter_by_level,  # a line no handler wants costs no rendering
        *_STAMPS,
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger for module `name`. Taken from here rather than from structlog
    directly so that importing it configures structlog: a line is never printed by
    structlog's default (to stdout, unredacted), even in a command that never calls setup."""
    return structlog.stdlib.get_logger(name)


def _redact(_logger: WrappedLogger, _method: str, line: Any) -> str:
    """The last step of every handler: the rendered line with secrets and token shapes
    replaced."""
    return redactor(str(line))


def _formatter(*rendering: Processor) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_STAMPS,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *rendering,
            _redact,
        ],
    )


def json_lines() -> logging.Formatter:
    """One JSON object a line; what JSON cannot encode is written as its repr."""
    return _formatter(structlog.processors.format_exc_info, structlog.processors.JSONRenderer())


def readable_lines(*, colors: bool) -> logging.Formatter:
    """`time [level] event [logger] key=value …`, then any traceback.

    Control characters (a CLI's NUL bytes, a terminal escape in a server's text) are shown
    escaped, as `history` and `logs` show them; a traceback keeps its line breaks. Only the
    level name is coloured: a colour code between a key and its value would hide a token
    shape from the redactor, which reads the rendered line."""
    plain = KeyValueColumnFormatter(key_style=None, value_style="", reset_style="", value_repr=str)
    renderer = ConsoleRenderer(
        columns=[
            Column("timestamp", plain),
            Column(
                "level",
                LogLevelColumnFormatter(
                    ConsoleRenderer.get_default_level_styles(colors=colors),
                    reset_style="\x1b[0m" if colors else "",
                ),
            ),
            Column(
                "event",
                KeyValueColumnFormatter(
                    key_style=None, value_style="", reset_style="", value_repr=_shown, width=30
                ),
            ),
            Column(
                "logger",
                KeyValueColumnFormatter(
                    key_style=None,
                    value_style="",
                    reset_style="",
                    value_repr=_shown,
                    prefix="[",
                    postfix="]",
                ),
            ),
            Column(
                "",  # every other field, by name
                KeyValueColumnFormatter(
                    key_style="", value_style="", reset_style="", value_repr=_shown
                ),
            ),
        ],
        exception_formatter=_traceback,
    )
    return _formatter(renderer)


def _shown(value: object) -> str:
    """A string as it is, anything else as its repr; control characters escaped."""
    return printable(value if isinstance(value, str) else repr(value))


def _traceback(out: TextIO, exc_info: ExcInfo) -> None:
    text = StringIO()
    structlog.dev.plain_traceback(text, exc_info)
    out.write(printable(text.getvalue(), lines=True))


def setup(
    *,
    log_file: Path | None,
    console_level: int = logging.INFO,
    file_level: int = logging.DEBUG,
    secrets: Iterable[str | None] = (),
    console_stream: IO[str] | None = None,
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
        console.setFormatter(readable_lines(colors=stream.isatty()))
        root.addHandler(console)

    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        to_file = LogFile(log_file, maxBytes=MAX_BYTES, backupCount=KEEP, encoding="utf-8")
        to_file.setLevel(file_level)
        to_file.setFormatter(json_lines())
        root.addHandler(to_file)

    # httpx logs every request at INFO; that is noise on a laptop that polls all day.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # asyncio's "Using selector: EpollSelector" at DEBUG on every start tells a user nothing.
    logging.getLogger("asyncio").setLevel(logging.INFO)


class LogFile(logging.handlers.RotatingFileHandler):
    """The stdlib's rotating log file, created 0600 whatever the umask (it holds run output),
    and still written when a rotation fails (a rename refused): the failure is reported on
    stderr as logging reports any, and the line goes to the file already open.

    Each line is rendered once (JSON, redaction: most of what a line costs), and its length
    decides the rotation, where the stdlib renders it a second time to measure it."""

    def _open(self) -> Any:
        return open(
            self.baseFilename,
            self.mode,
            encoding=self.encoding,
            errors=self.errors,
            opener=_owner_only,
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            if self.stream is None:
                self.stream = self._open()
            written = self.stream.tell()
            if 0 < self.maxBytes <= written + len(line) and written:
                try:
                    self.doRollover()
                except OSError:  # e.g. a rename refused: keep writing the file already open
                    self.handleError(record)
                if self.stream is None:
                    self.stream = self._open()
            self.stream.write(line)
            self.flush()
        except RecursionError:  # as the stdlib's handlers do: never hide a runaway recursion
            raise
        except Exception:
            self.handleError(record)


def _owner_only(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def _discarded(stream: IO[str]) -> bool:
    """Whether `stream` is /dev/null (e.g. a service whose stderr nobody reads)."""
    try:
        return os.path.samestat(os.fstat(stream.fileno()), os.stat(os.devnull))
    except (AttributeError, OSError, ValueError):  # no file descriptor: a real stream
        return False


# A command that never calls setup still shows a warning of ours readable and redacted: not
# the raw fields structlog hands to stdlib logging, which its last-resort handler would print.
if logging.lastResort is not None:
    logging.lastResort.setFormatter(readable_lines(colors=False))
