"""The HTTP client for the Lobu worker API — the only module that knows URLs and status codes.

Every call returns an `Answer` whose `kind` says what the caller should do,
so the dispatcher never looks at a status code:

- OK         the server did what we asked
- FINAL      the run is already terminal on the server: nothing more to send
- TRANSIENT  try again later (network, timeouts, 408/429/5xx, undecodable bodies)
- AUTH       the token was refused (401): refresh once or ask the user to log in
- REJECTED   it can never succeed as sent (other 4xx): stop, keep it visible
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpx

from device_agent import __version__
from device_agent.server.http import (
    BODY_CAP,
    CONNECT_TIMEOUT,
    AnswerTooLarge,
    Reply,
    RequestFailed,
    TimedOut,
    connect,
    fetch,
)

USER_AGENT: Final = f"device-agent/{__version__}"
NOT_IN_PROGRESS: Final = "Run is not in progress"
GENERIC_COMPLETION_ROUTE: Final = "/api/workers/complete"  # for run types no lane handles
# The worker gateway is mounted under /lobu (docs/protocol.md, "Transcript of an automation run").
TRANSCRIPT_ROUTE: Final = "/lobu/worker/transcript/snapshot"
POLL_TIMEOUT_MARGIN_SECONDS: Final = 10.0  # a held poll's answer may take this long to arrive
_WINDOW_ERROR_MARKER: Final = "approved_input.window_"

# The most bytes read from one answer (docs/protocol.md, "Poll and claim"):
# a poll answer is a few KB (a watcher run with its window a few hundred), every other
# answer a few hundred bytes. Anything larger is a broken or hostile server.
POLL_BODY_CAP: Final = 4 * 1024 * 1024
# A hotel or tethered uplink: a 4 MiB result then gets about four minutes to go up.
SLOWEST_UPLINK_BYTES_PER_SECOND: Final = 16 * 1024


class AnswerKind(enum.Enum):
    OK = "ok"
    FINAL = "final"
    TRANSIENT = "transient"
    AUTH = "auth"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Answer:
    kind: AnswerKind
    status: int | None  # None: no HTTP answer at all
    body: Any
    message: str
    retry_after: float | None = None
    timed_out: bool = False  # no answer in time: the server may still have acted on it
    # The first bytes of an answer refused as too large (`AnswerTooLarge.head`), else b"".
    refused_head: bytes = field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        return self.kind is AnswerKind.OK

    @property
    def reached(self) -> bool:
        """Whether the server answered at all (False: network error or timeout)."""
        return self.status is not None

    @property
    def server_fault(self) -> bool:
        """A 5xx: the server (or a proxy in front of it) failed, not our request."""
        return self.status is not None and self.status >= 500

    @property
    def repeatable_failure(self) -> str | None:
        """The words of a plain 500, which may repeat word for word when the server refuses
        a result for good (docs/protocol.md, "What a real server does"); None otherwise.
        502/503/504 — a proxy or a deploy — are an outage and never count."""
        return self.message if self.status == 500 else None

    @property
    def already_final(self) -> bool:
        """409 "Run is not in progress": a retry after a stored completion, or a reaped run."""
        return self.kind is AnswerKind.FINAL and self.message == NOT_IN_PROGRESS

    def rejection_hint(self) -> str:
        """What a user can do about a rejected poll, read from the server's error code."""
        code = self.body.get("error") if isinstance(self.body, dict) else None
        return _REJECTION_HINTS.get(code if isinstance(code, str) else "", _DEFAULT_HINT)

    def describe(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "no answer"
        return f"{where}: {self.message}" if self.message else where


_REJECTION_HINTS: Final = {
    "worker_id_mismatch": "this token is bound to another worker_id: set worker_id to that value "
    "or mint a token for this device",
    "platform_mismatch": "this worker_id was first used from another platform: use a new worker_id",
    "upgrade_required": "the server needs a newer device-agent: upgrade it",
}
_DEFAULT_HINT: Final = "check the server URL, token and worker_id"


TokenGetter = Callable[[], str]


class LobuClient:
    """Async client for one server origin; the token is read per request, so a refresh applies.

    Requests go through the agent's one HTTP client (device_agent/server/http.py): an
    overall deadline, a capped answer, no redirect followed, the token to this origin only."""

    def __init__(
        self,
        origin: str,
        token: TokenGetter,
        *,
        request_timeout: float = 15.0,
        poll_timeout: float = 90.0,
        connect_timeout: float = CONNECT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.origin = origin.rstrip("/")
        self._token = token
        self._request_timeout = request_timeout
        self._poll_timeout = poll_timeout
        self._connect_timeout = connect_timeout
        self._transport = transport
        self._http = self._connect()
        self._in_flight: dict[httpx.AsyncClient, int] = {}
        self._retired: list[httpx.AsyncClient] = []

    def _connect(self) -> httpx.AsyncClient:
        return connect(self.origin, transport=self._transport, headers=_HEADERS)

    def forget_connections(self) -> None:
        """Open new connections from now on: call after the machine slept. A kept-alive
        connection may be dead by then (a NAT or the server dropped it, the network
        changed), and a request on it would wait out its read timeout. Requests under way
        finish on the old connections, which are closed once they are done."""
        self._retired.append(self._http)
        self._http = self._connect()

    async def aclose(self) -> None:
        for http in (*self._retired, self._http):
            await http.aclose()
        self._retired.clear()

    async def __aenter__(self) -> LobuClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------ routes

    async def poll(self, body: Mapping[str, Any]) -> Answer:
        """Poll with `body` (`automation.registration.poll_body`). The read timeout is
        `poll_timeout`, and stays above the body's `wait_seconds` when it asks the server to
        hold the poll, so a held poll is never cut short by us (docs/protocol.md, "Long-poll")."""
        wait = body.get("wait_seconds")
        held = float(wait) if isinstance(wait, int | float) and not isinstance(wait, bool) else 0
        floor = held + POLL_TIMEOUT_MARGIN_SECONDS if held > 0 else 0.0
        read = max(self._poll_timeout, floor)
        return await self._post("/api/workers/poll", body, read_seconds=read, cap=POLL_BODY_CAP)

    async def heartbeat(self, *, run_id: int, worker_id: str) -> Answer:
        answer = await self._post(
            "/api/workers/heartbeat", {"run_id": run_id, "worker_id": worker_id}
        )
        if answer.status in (403, 404, 409):
            # Cancelled, reaped, finished elsewhere, or not ours: stop working on it.
            return _with_kind(answer, AnswerKind.FINAL)
        return answer

    async def complete(self, route: str, body: Mapping[str, Any]) -> Answer:
        """Report a run's result to its lane's route (the lane builds route and body).

        A large output gets time to go up a slow link on top of the usual deadline:
        one that times out on every try would never be delivered."""
        seconds = self._request_timeout + upload_allowance(body)
        answer = await self._post(route, body, read_seconds=seconds)
        if route == GENERIC_COMPLETION_ROUTE:
            return answer
        return _classify_completion(answer)

    async def transcript_snapshot(
        self, *, run_id: int, terminal_status: str, jsonl: str, session_token: str
    ) -> Answer:
        """Upload a run's transcript (docs/protocol.md, "Transcript of an automation run").

        Sent with `session_token` — the run's `agent_session` token — and never the device
        token; to this same origin, where the request hook lets a bearer go. Answers: 200
        `{id}`; 401 `Invalid token`; 400 a bad body or status; 413 over 4 MiB; 409 when it
        does not extend the transcript the server has for the run."""
        body = {"runId": run_id, "terminalStatus": terminal_status, "snapshotJsonl": jsonl}
        seconds = self._request_timeout + upload_allowance(body)
        return await self._post(TRANSCRIPT_ROUTE, body, read_seconds=seconds, bearer=session_token)

    async def trigger(self, route: str) -> Answer:
        """Send "Run now" to a lane's device route, which needs a token bound to this device
        (docs/protocol.md, "Run now"). `device-agent trigger` uses `identity.run_now`, which
        also handles unbound tokens, checking the watcher's pinning first."""
        return await self._post(route, None)

    async def devices(self) -> Answer:
        return await self._send("GET", "/api/me/devices", None)

    # --------------------------------------------------------- transport

    async def _post(self, path: str, body: Mapping[str, Any] | None, **kw: Any) -> Answer:
        return await self._send("POST", path, body, **kw)

    async def _send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        *,
        read_seconds: float | None = None,
        cap: int = BODY_CAP,
        bearer: str | None = None,
    ) -> Answer:
        """One request, bounded in time and size whatever the server does: each read and
        write within `read_seconds`, the whole exchange within that plus the connect
        time, the answer's body within `cap` bytes. `bearer`: a credential of the request's
        own instead of the device token."""
        seconds = self._request_timeout if read_seconds is None else read_seconds
        http = self._http
        self._in_flight[http] = self._in_flight.get(http, 0) + 1
        try:
            reply = await fetch(
                http,
                method,
                path,
                deadline=seconds + self._connect_timeout,
                read_timeout=seconds,
                cap=cap,
                bearer=bearer if bearer is not None else self._token(),
                json=body,
            )
        except AnswerTooLarge as exc:
            return Answer(AnswerKind.TRANSIENT, exc.status, None, str(exc), refused_head=exc.head)
        except TimedOut as exc:
            return Answer(AnswerKind.TRANSIENT, None, None, f"timed out ({exc})", timed_out=True)
        except RequestFailed as exc:
            return Answer(AnswerKind.TRANSIENT, None, None, f"cannot reach the server ({exc})")
        finally:
            self._in_flight[http] -= 1
            await self._close_retired()
        return classify(reply)

    async def _close_retired(self) -> None:
        """Close the clients `forget_connections` set aside once no request uses them."""
        for http in [old for old in self._retired if not self._in_flight.get(old)]:
            self._retired.remove(http)
            self._in_flight.pop(http, None)
            await http.aclose()


_HEADERS: Final = {"User-Agent": USER_AGENT, "Accept": "application/json"}


def classify(reply: Reply) -> Answer:
    """The generic classification; route-specific rules are layered on top."""
    status = reply.status_code
    body = _json_or_none(reply)
    message = _error_message(body, reply)
    retry_after = parse_retry_after(reply.headers.get("retry-after"))
    if 200 <= status < 300:
        if body is None:
            return Answer(AnswerKind.TRANSIENT, status, None, f"undecodable body: {message}")
        return Answer(AnswerKind.OK, status, body, "")
    if status == 401:
        return Answer(AnswerKind.AUTH, status, body, message)
    if status in (408, 429) or status >= 500:
        return Answer(AnswerKind.TRANSIENT, status, body, message, retry_after)
    return Answer(AnswerKind.REJECTED, status, body, message, retry_after)


def _classify_completion(answer: Answer) -> Answer:
    if answer.status == 409:
        # "Run is not in progress": what a retry after a stored completion gets, or a reaped
        # run (docs/protocol.md, "What a real server does"). "Not a watcher run": the wrong
        # route; nothing will ever accept it.
        return _with_kind(answer, AnswerKind.FINAL)
    if answer.status == 400 and _WINDOW_ERROR_MARKER in answer.message:
        # The server failed the run itself because its window was malformed.
        return _with_kind(answer, AnswerKind.FINAL)
    if answer.status is not None and 300 <= answer.status < 400:
        # Not followed (the token stays home), and not final either: a proxy or a server
        # moved in front of the real one. The result stays in the outbox and is tried again.
        return _with_kind(answer, AnswerKind.TRANSIENT)
    return answer


def _with_kind(answer: Answer, kind: AnswerKind) -> Answer:
    return Answer(kind, answer.status, answer.body, answer.message, answer.retry_after)


def parse_retry_after(
    value: str | None, *, now: Callable[[], datetime] | None = None
) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now() if now else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def _json_or_none(reply: Reply) -> Any:
    """The decoded body, or None for anything that cannot be decoded, for any reason."""
    try:
        return reply.json()
    except ValueError:  # UnicodeDecodeError and a body nested too deep included
        return None


def _error_message(body: Any, reply: Reply) -> str:
    if 300 <= reply.status_code < 400:
        location = reply.headers.get("location", "")[:200]
        return f"redirected to {location!r}, which is not followed"
    if isinstance(body, Mapping):
        for key in ("error_description", "error", "message"):
            value = body.get(key)
            if isinstance(value, str) and value:
                if key == "error_description" and isinstance(body.get("error"), str):
                    return f"{body['error']}: {value}"
                return value
    text = reply.content[:400].decode("utf-8", "replace").strip().replace("\n", " ")
    return text[:200] if text else reply.reason_phrase


def upload_allowance(body: Mapping[str, Any]) -> float:
    """Seconds to allow for sending `body`'s text at the slowest uplink we plan for."""
    size = sum(len(value) for value in body.values() if isinstance(value, str))
    return size / SLOWEST_UPLINK_BYTES_PER_SECOND
