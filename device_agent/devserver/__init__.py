"""A Lobu-compatible local server, for tests, the demo and experiments.

`DevServer` ties the pieces together: `state` (what the server knows),
`routes` and its `routes_*` modules (how each endpoint answers, check for
check like a real Lobu server), `faults` (failures on demand) and `http`
(the wire). It binds loopback only: it has unauthenticated helper routes
under `/_dev/` (see `dev_routes`).

    state = DevState(create_checkin_watcher=False)
    token = state.add_token()
    wid = state.add_watcher("Summarise my inbox", pinned_worker_id="linux:host")
    state.queue_run(wid)
    async with DevServer(state) as server:
        ...  # point the agent at server.url with `token`

`DevState(lane="watcher")` (the default) answers like Lobu 1.6.0, whose
recorded answers `tests/fidelity` replays against it; `lane="automation"`
serves the automation lane of current Lobu servers.

Where it deliberately differs from a real Lobu server (and nowhere else):
- a request without Authorization gets 401 unless `DevState(allow_anonymous=True)`
  (a real local server trusts it as an anonymous worker that may touch any run);
- one user and one organization; no scheduler (runs are queued by tests,
  the trigger routes or `/_dev`), so scheduled runs exist only when queued;
- no warm-up unless asked (`warmup_seconds`, `--warmup-seconds`, `/_dev/warmup`),
  so a test that does not care about it stays fast;
- `mint-child-token` mints for `headless` too, bound to the worker_id asked for
  (as current servers do) unless `DevState(child_tokens="1.6.0")`, which answers
  as Lobu 1.6.0 does (`chrome-extension` only);
- the MCP server is a stand-in that runs no code (`routes_mcp.mcp`);
- texts never observed on a real server are marked "inferred" where they are made.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import platform
import shlex
import socket
import sys
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from device_agent.devserver.faults import Fault, FaultInjector, FaultKind, FaultRoute
from device_agent.devserver.http import HttpServer
from device_agent.devserver.routes import Router
from device_agent.devserver.state import DevState, RequestLog, RunRecord

__all__ = [
    "DevServer",
    "DevState",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "FaultRoute",
    "RequestLog",
    "RunRecord",
    "add_dev_server_arguments",
    "run_from_arguments",
    "seed_demo_runs",
    "serve_forever",
]

REAP_INTERVAL_SECONDS = 1.0
THREAD_START_TIMEOUT = 10.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DevServer:
    """Serves a `DevState` over HTTP on loopback; `port=0` picks a free port."""

    def __init__(
        self,
        state: DevState | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        reap_interval: float = REAP_INTERVAL_SECONDS,
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"the dev server only binds loopback addresses, not {host!r}")
        self.state = state if state is not None else DevState()
        self.host = host
        self.reap_interval = reap_interval
        self._http = HttpServer(Router(self.state), host, port)
        self._reaper: asyncio.Task[None] | None = None
        self._stop_requested: asyncio.Event | None = None

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        await self._http.start()
        self.state.public_url = self.url
        self.state.start_warmup()  # a (re)start is a boot: polls wait for the warm-up
        self._reaper = asyncio.create_task(self._reap_forever())

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        await self._http.stop()

    async def __aenter__(self) -> DevServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @contextlib.contextmanager
    def running_in_thread(self) -> Iterator[DevServer]:
        """Run the server's own event loop in a daemon thread, for synchronous tests.

        This is the one thread the dev server uses; `DevState` is lock-guarded
        so the test thread may seed and inspect it meanwhile.
        """
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_until_complete,
            args=(self._serve_until_stopped(ready, failure),),
            name="devserver",
            daemon=True,
        )
        thread.start()
        if not ready.wait(THREAD_START_TIMEOUT):
            raise RuntimeError("dev server did not start in time")
        if failure:
            thread.join()
            loop.close()
            raise failure[0]
        try:
            yield self
        finally:
            stop = self._stop_requested
            assert stop is not None
            loop.call_soon_threadsafe(stop.set)
            thread.join(THREAD_START_TIMEOUT)
            if not thread.is_alive():
                loop.close()

    async def _serve_until_stopped(
        self, ready: threading.Event, failure: list[BaseException]
    ) -> None:
        self._stop_requested = asyncio.Event()
        try:
            await self.start()
        except BaseException as exc:  # handed to the starting thread, which re-raises it
            failure.append(exc)
            ready.set()
            return
        ready.set()
        await self._stop_requested.wait()
        await self.stop()

    async def _reap_forever(self) -> None:
        # Requests also reap lazily; this catches runs nobody asks about.
        while True:
            await asyncio.sleep(self.reap_interval)
            self.state.reap()


def default_worker_id() -> str:
    """`<platform>:<short-hostname>`, the shape docs/protocol.md, "Identities", suggests."""
    system = {"Darwin": "macos", "Linux": "linux", "Windows": "windows"}.get(
        platform.system(), platform.system().lower() or "unknown"
    )
    host = socket.gethostname().split(".")[0] or "localhost"
    return f"{system}:{host}"


def _recent_changes(worker_id: str) -> dict[str, Any]:
    """The sample job both lanes seed: a watcher or an automation, pinned to `worker_id`."""
    return {
        "prompt": (
            "List the five most recently modified files in the current directory"
            " and say what changed."
        ),
        "name": "Recent changes",
        "slug": "recent-changes",
        "pinned_worker_id": worker_id,
        "execution_config": {"timeout_seconds": 120},
    }


def seed_demo_watchers(state: DevState, worker_id: str) -> list[str]:
    """A couple of watchers pinned to `worker_id`, one with a run already queued."""
    digest = state.add_watcher(**_recent_changes(worker_id))
    notify = state.add_watcher(
        "Reply with a one-line greeting and today's date.",
        name="Hello",
        slug="hello",
        agent_kind=None,
        pinned_worker_id=worker_id,
        notification_channel="both",
    )
    state.queue_run(notify, dispatch_source="manual")
    return [digest, notify]


def seed_demo_automations(state: DevState, worker_id: str) -> list[str]:
    """The automation-lane sample: one automation with an agent, one run queued."""
    digest = state.add_automation(**_recent_changes(worker_id))
    state.queue_automation_run(digest, dispatch_source="manual")
    return [digest]


def seed_demo_runs(
    state: DevState, worker_id: str, *, follow_first_device: bool = False
) -> list[str]:
    """The sample runs of the state's lane, pinned to `worker_id`; with `follow_first_device`
    the first device that signs in takes them over (`state/samples.py`)."""
    if state.lane == "automation":
        ids = seed_demo_automations(state, worker_id)
        state.mark_samples("automations", ids, worker_id, follow_first_device=follow_first_device)
    else:
        ids = seed_demo_watchers(state, worker_id)
        state.mark_samples("watchers", ids, worker_id, follow_first_device=follow_first_device)
    return ids


def add_dev_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The dev server's command-line flags (shared by `device-agent dev-server` and
    `python -m device_agent.devserver`)."""
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8787, help="port (0 = any free port)")
    parser.add_argument(
        "--no-seed",
        "--no-demo",  # the old spelling of `python -m device_agent.devserver`
        dest="no_seed",
        action="store_true",
        help="start without sample watchers",
    )
    parser.add_argument(
        "--worker-id", dest="worker_id", help="pin the sample watchers to this worker_id"
    )
    parser.add_argument(
        "--lane",
        choices=("watcher", "automation"),
        default="watcher",
        help="serve the watcher lane (Lobu 1.6.0) or the automation lane (current Lobu)",
    )
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=0.0,
        help="hold polls this long after start, as a booting server does (default 0)",
    )
    parser.add_argument(
        "--min-app-version",
        help="automation lane: answer 409 upgrade_required to polls below this x.y.z",
    )


def run_from_arguments(args: argparse.Namespace) -> int:
    """Run the server the parsed `device-agent dev-server` flags describe, until Ctrl-C.

    Returns the exit status: 0 after Ctrl-C, 1 when it cannot listen.
    """
    state = DevState(lane=args.lane, warmup_seconds=args.warmup_seconds)
    state.min_app_version = args.min_app_version
    serving = serve_forever(
        args.host, args.port, seed_demo=not args.no_seed, worker_id=args.worker_id, state=state
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serving)
    except (ValueError, OSError) as exc:
        print(
            f"dev server: cannot listen on {args.host}:{args.port}: {exc}."
            " Use a loopback --host and a free --port (0 picks one).",
            file=sys.stderr,
        )
        return 1
    return 0


def agent_environment(url: str, token: str, worker_id: str) -> str:
    """The variables every `device-agent` command needs to talk to this server as the device
    the sample runs are pinned to."""
    return (
        f"DEVICE_AGENT_SERVER={url} DEVICE_AGENT_TOKEN={token} "
        f"DEVICE_AGENT_WORKER_ID={shlex.quote(worker_id)}"
    )


def run_line(url: str, token: str, worker_id: str) -> str:
    """The `device-agent run` command that picks up the sample runs as printed, with the
    bundled offline `demo` executor, which needs no CLI installed."""
    return f"{agent_environment(url, token, worker_id)} device-agent run --agent demo"


async def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8787,
    *,
    seed_demo: bool,
    worker_id: str | None = None,
    state: DevState | None = None,
) -> None:
    """Run a dev server until cancelled, printing its URL, a token and a ready command."""
    state = state if state is not None else DevState()
    token = state.add_token()
    chosen = worker_id is not None  # pinned on purpose: the samples stay there
    worker_id = worker_id or default_worker_id()
    if seed_demo:
        seed_demo_runs(state, worker_id, follow_first_device=not chosen)
    state.on_notice = lambda message: print(message, flush=True)
    async with DevServer(state, host=host, port=port) as server:
        print(f"device-agent dev server (Lobu {state.lane} lane) listening on {server.url}")
        print(f"token: {token}")
        print(f"state: {server.url}/_dev/state")
        print("run the agent against it (the sample runs are pinned to this worker id):")
        print(run_line(server.url, token, worker_id))
        print("and in another shell, for status, history and trigger:")
        print(f"export {agent_environment(server.url, token, worker_id)}")
        if seed_demo and not chosen:
            print(
                f"or sign in as a real device would: device-agent login --server {server.url} "
                f"(approve at {server.url}/oauth/device); the first device that signs in "
                "gets the sample runs"
            )
        sys.stdout.flush()
        await asyncio.Event().wait()
