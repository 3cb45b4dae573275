"""The router: faults, the warm-up and long-poll holds, then the endpoint.

The endpoints live by area: `routes_worker` (poll, heartbeat), `routes_watcher`,
`routes_automation` and `routes_chat` (the lanes), `routes_transcript` (a run's
transcript), `routes_mcp` (the MCP stand-in),
`routes_auth` (login and devices), `dev_routes` (the `/_dev` helpers). Every
endpoint runs with the state lock held and never awaits, which is what makes a
claim atomic; only the router awaits, outside the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from functools import partial
from http import HTTPStatus
from typing import Final

from device_agent.devserver import (
    dev_routes,
    routes_auth,
    routes_automation,
    routes_chat,
    routes_mcp,
    routes_transcript,
    routes_watcher,
    routes_worker,
)
from device_agent.devserver.access import authenticate, worker_gate
from device_agent.devserver.faults import Fault
from device_agent.devserver.http import Request, Response
from device_agent.devserver.state import DevState
from device_agent.devserver.wire import Caller, digits, error, json_object, not_found

# How often a poll held by the warm-up looks whether the warm-up is over.
HOLD_RECHECK_SECONDS: Final = 0.05
HOLD_LOOK_AGAIN_SECONDS: Final = 1.0  # a held poll also looks again this often, woken or not

_RUN_ROUTE: Final = re.compile(r"^/api/workers/me/runs/([^/]+)/complete-(watcher|automation|chat)$")
_WATCHER_TRIGGER: Final = re.compile(r"^/api/workers/me/watchers/([^/]+)/trigger$")
_AUTOMATION_TRIGGER: Final = re.compile(r"^/api/workers/me/automations/([^/]+)/trigger$")
_MANAGE_WATCHERS: Final = re.compile(r"^/api/([^/]+)/manage_watchers$")
# The tool proxy's reads of a watcher (what "Run now" with an unbound token checks pinning with).
_WATCHER_TOOLS: Final = re.compile(r"^/api/([^/]+)/(get_watcher|list_watchers)$")
_MCP: Final = re.compile(r"^/mcp(?:/([^/]+))?$")

Handler = Callable[[DevState, Caller, Request], Response]


class Router:
    """The HTTP handler: faults first, then the endpoint, then the request log."""

    def __init__(self, state: DevState) -> None:
        self.state = state

    async def __call__(self, request: Request) -> Response | None:
        if request.path.startswith("/_dev/"):
            with self.state.lock:
                answer = dev_routes.admin(self.state, request)
            self.state.log_request(request.method, request.path, answer.status)
            return answer
        route = fault_route(request.path)
        if route == "complete":
            _note_completion_attempt(self.state, request)
        try:
            response = await self._respond(request, route, self.state.faults.pick(route))
        except Exception as exc:  # a dev-server bug: say so rather than hang up
            response = error(500, f"dev server error: {exc!r}")
        status = response.status if response is not None else 0
        self.state.log_request(request.method, request.path, status)
        return response

    async def _respond(self, request: Request, route: str, fault: Fault | None) -> Response | None:
        if fault is not None:
            if fault.kind == "status":
                return _fault_status(fault)
            if fault.kind == "drop":
                return None
            if fault.kind == "garbage":
                return Response(200, fault.body.encode(), content_type="text/html")
            if fault.kind == "delay":
                await asyncio.sleep(fault.seconds)
        if route == "poll" and request.method == "POST":
            await self._hold_during_warm_up()
        response = self._dispatch_locked(request)
        if route == "poll" and request.method == "POST":
            response = await self._hold_long_poll(request, response)
        if fault is not None and fault.kind == "drop_after_commit":
            return None  # committed above; the answer is "lost"
        if fault is not None and fault.kind == "slow_answer":
            await asyncio.sleep(fault.seconds)  # committed above; the answer is on its way
        return response

    async def _hold_during_warm_up(self) -> None:
        # A booting server holds polls, then processes them even if the client
        # gave up (docs/protocol.md, "What a real server does"). Re-checked in
        # steps, so a warm-up that is cut short releases held polls at once.
        if self.state.warmup_left() <= 0:
            return
        with self.state.lock:
            self.state.warming_polls += 1
        try:
            while (left := self.state.warmup_left()) > 0:  # noqa: ASYNC110 (set from other threads)
                await asyncio.sleep(min(left, HOLD_RECHECK_SECONDS))
        finally:
            with self.state.lock:
                self.state.warming_polls -= 1

    def _dispatch_locked(self, request: Request) -> Response:
        with self.state.lock:
            self.state.reap()
            return dispatch(self.state, request)

    async def _hold_long_poll(self, request: Request, response: Response) -> Response:
        """Hold an idle poll up to its `wait_seconds`, answering as soon as a run is claimed:
        a queued run wakes it at once, as on a real server."""
        wait = routes_automation.long_poll_seconds(self.state, request, response)
        if wait <= 0 or not self.state.holding:
            return response
        loop = asyncio.get_running_loop()
        queued = asyncio.Event()

        def wake() -> None:  # called under the state's lock, from any thread
            loop.call_soon_threadsafe(queued.set)

        with self.state.lock:
            self.state.run_queued_listeners.add(wake)
            self.state.held_polls += 1
        try:
            deadline = loop.time() + wait
            while (left := deadline - loop.time()) > 0:
                # Woken by a queued run; also looks again now and then, for what else may have
                # made a run claimable (a cancelled run freeing its automation, the clock).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queued.wait(), min(left, HOLD_LOOK_AGAIN_SECONDS))
                queued.clear()
                response = self._dispatch_locked(request)
                if not routes_automation.is_idle(response) or not self.state.holding:
                    return response
        finally:
            with self.state.lock:
                self.state.run_queued_listeners.discard(wake)
                self.state.held_polls -= 1
        return Response.json(200, {"next_poll_seconds": 0})


def fault_route(path: str) -> str:
    """The fault-injection name of a path: poll, heartbeat, complete, trigger or other."""
    if path == "/api/workers/poll":
        return "poll"
    if path == "/api/workers/heartbeat":
        return "heartbeat"
    if path in ("/api/workers/complete", "/api/workers/complete-action") or _RUN_ROUTE.match(path):
        return "complete"
    if any(p.match(path) for p in (_WATCHER_TRIGGER, _AUTOMATION_TRIGGER, _MANAGE_WATCHERS)):
        return "trigger"
    if path == routes_transcript.TRANSCRIPT_ROUTE:
        return "transcript"
    return "other"


def _fault_status(fault: Fault) -> Response:
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = f"{fault.retry_after:g}"  # may be fractional, e.g. "0.35"
    try:
        phrase = HTTPStatus(fault.status).phrase
    except ValueError:
        phrase = "Error"
    return Response.json(fault.status, {"error": f"{phrase} (injected fault)"}, headers)


def _note_completion_attempt(state: DevState, request: Request) -> None:
    match = _RUN_ROUTE.match(request.path)
    if match:
        run_id = digits(match.group(1))
    else:
        body = json_object(request)
        run_id = digits(str(body.get("run_id"))) if body is not None else None
    with state.lock:
        run = state.find_run(run_id) if run_id is not None else None
        if run is not None:
            run.completion_attempts += 1


# ================================================================ dispatch


def dispatch(state: DevState, request: Request) -> Response:
    """Route one request (the caller holds the state lock)."""
    if (request.method, request.path) == ("POST", routes_transcript.TRANSCRIPT_ROUTE):
        return routes_transcript.snapshot(state, request)  # a run's token: checks of its own
    public = routes_auth.public_route(request)
    if public is not None:
        return public(state, request)
    if request.path.startswith("/api/workers/"):
        return _worker_api(state, request)
    handler = _user_route(request)
    if handler is None:
        return not_found()
    caller = authenticate(state, request, anonymous_ok=False)
    if isinstance(caller, Response):
        return caller
    return handler(state, caller, request)


def _worker_api(state: DevState, request: Request) -> Response:
    caller = authenticate(state, request, anonymous_ok=state.allow_anonymous)
    if isinstance(caller, Response):
        return caller
    if (request.method, request.path) == ("GET", "/api/workers/poll"):
        return _api_index(request)
    denied = worker_gate(state, caller, request.path)
    if denied is not None:
        return denied
    handler = _worker_route(state, request)
    if handler is None:
        return not_found()
    return handler(state, caller, request)


def _api_index(request: Request) -> Response:
    """What a GET of the poll route answers: an index of the API (seen on a real server)."""
    origin = f"http://{request.header('host') or 'localhost'}"
    return Response.json(
        200,
        {
            "status": "ok",
            "mcp_endpoint": f"{origin}/mcp",
            "health": "/health",
            "openapi": f"{origin}/api/docs/openapi.json",
        },
    )


def _worker_route(state: DevState, request: Request) -> Handler | None:
    if request.method != "POST":
        return None
    simple: dict[str, Handler] = {
        "/api/workers/poll": routes_worker.poll,
        "/api/workers/heartbeat": routes_worker.heartbeat,
        "/api/workers/complete": routes_worker.complete_generic,
        "/api/workers/complete-action": routes_worker.complete_generic,
    }
    if request.path in simple:
        return simple[request.path]
    if match := _RUN_ROUTE.match(request.path):
        lane_route = {
            "watcher": routes_watcher.complete_watcher,
            "automation": routes_automation.complete_automation,
            "chat": routes_chat.complete_chat,
        }[match.group(2)]
        return partial(lane_route, run_id_text=match.group(1))
    if match := _WATCHER_TRIGGER.match(request.path):
        return partial(routes_watcher.trigger, watcher_id_text=match.group(1))
    if match := _AUTOMATION_TRIGGER.match(request.path):
        return partial(routes_automation.trigger, automation_id_text=match.group(1))
    return None


def _user_route(request: Request) -> Handler | None:
    handler = routes_auth.user_route(request)
    if handler is not None:
        return handler
    if match := _MCP.match(request.path):
        if request.method != "POST":
            return routes_mcp.not_allowed
        return partial(routes_mcp.mcp, org_slug=match.group(1))
    if request.method != "POST":
        return None
    if match := _MANAGE_WATCHERS.match(request.path):
        return partial(routes_watcher.manage_watchers, org_slug=match.group(1))
    if match := _WATCHER_TOOLS.match(request.path):
        tool = {
            "get_watcher": routes_watcher.get_watcher,
            "list_watchers": routes_watcher.list_watchers,
        }[match.group(2)]
        return partial(tool, org_slug=match.group(1))
    return None
