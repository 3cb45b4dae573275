"""What every route shares: the caller, error answers, and reading values the way
the real server's JavaScript and Postgres read them (so garbage fails alike)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from device_agent.devserver.http import Request, Response
from device_agent.devserver.state import RunRecord, TokenRecord, iso

INVALID_BODY: Final = "Invalid or missing JSON body"
NOT_IN_PROGRESS: Final = "Run is not in progress"
USER_SCOPED_ONLY: Final = "Endpoint not available to user-scoped workers"
PG_BIGINT_MAX: Final = 2**63 - 1
# What Postgres says about U+0000 in a jsonb value and in a text column
# (docs/protocol.md, "What a real server does").
NUL_IN_JSONB: Final = "unsupported Unicode escape sequence"
NUL_IN_TEXT: Final = 'invalid byte sequence for encoding "UTF8": 0x00'


@dataclass(frozen=True)
class Caller:
    """Who is asking. `token` None is a trusted anonymous worker (allow_anonymous)."""

    token: TokenRecord | None

    @property
    def bound_worker_id(self) -> str | None:
        return self.token.bound_worker_id if self.token else None


def error(status: int, message: str, **extra: Any) -> Response:
    return Response.json(status, {"error": message, **extra})


def not_found() -> Response:
    return error(404, "Not Found")


def worker_id_mismatch(bound: str) -> Response:
    return error(
        403, "worker_id_mismatch", error_description=f"this token is bound to worker_id '{bound}'"
    )


def json_object(request: Request) -> dict[str, Any] | None:
    try:
        value = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def js_parse_error(body: bytes) -> str | None:
    """The message of `JSON.parse` (Node 22) for a body it refuses, None if it parses.

    Routes without their own body check let this through as a 500
    (docs/protocol.md, "What a real server does").
    """
    text = body.decode("utf-8", errors="replace")
    try:
        json.loads(text)
    except ValueError as exc:
        position = _bad_literal_position(text)
        if position is None:
            position = getattr(exc, "pos", 0)
        if not text.strip() or position >= len(text):
            return "Unexpected end of JSON input"
        return f"Unexpected token '{text[position]}', \"{text}\" is not valid JSON"
    return None


def _bad_literal_position(text: str) -> int | None:
    # JSON.parse reads "not json" as the start of `null` and stumbles on the
    # "o"; Python's parser blames the "n". Find the character V8 names.
    start = len(text) - len(text.lstrip())
    for literal in ("null", "true", "false"):
        if text[start : start + 1] == literal[0]:
            for offset, expected in enumerate(literal):
                if text[start + offset : start + offset + 1] != expected:
                    return start + offset
            return None
    return None


def run_id_param(body: dict[str, Any]) -> int | Response:
    """`run_id` as the database would take it; garbage fails like a failed query (500)."""
    if "run_id" not in body:
        return error(500, "UNDEFINED_VALUE: Undefined values are not allowed")
    value = body["run_id"]
    if value is None:
        return 0  # `WHERE id = NULL` matches nothing
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str):
        number = digits(value)
    if number is None:
        return error(500, f'invalid input syntax for type bigint: "{pg_text(value)}"')
    if number > PG_BIGINT_MAX:
        return error(500, f'value "{number}" is out of range for type bigint')
    return number


def path_id(text: str, invalid: str) -> int | Response:
    """A numeric id from the path (the route pattern only lets digits through)."""
    number = digits(text)
    if number is None or number <= 0:
        return error(400, invalid)
    if number > PG_BIGINT_MAX:
        return error(500, "Internal server error")
    return number


def exit_code(value: Any) -> int | Response | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**31:
        return value
    return error(500, f'invalid input syntax for type integer: "{pg_text(value)}"')


def pg_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def digits(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def duration(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return max(0, math.floor(value))


def parses_as_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def opt_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def trimmed(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def has_nul(value: Any) -> bool:
    return isinstance(value, str) and "\x00" in value


def run_now_answer(run: RunRecord, now: float, *, already_queued: bool) -> Response:
    """What both lanes' "Run now" answer: the run and whether it was queued already."""
    return Response.json(
        200,
        {
            "run_id": run.id,
            "status": run.status,
            "already_queued": already_queued,
            "queued_at": iso(now),  # the time of the answer, as on a real server
        },
    )
