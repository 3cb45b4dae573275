"""Assemble an agent from settings and run it: what `run`, `demo` and the tests share."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable

import structlog

from device_agent.activity import MAX_TARGETS
from device_agent.alarm import Alarm
from device_agent.client import LobuClient
from device_agent.control import ControlServer
from device_agent.control_client import ControlError, Target, socket_path
from device_agent.control_handler import AgentControl
from device_agent.credentials import CredentialError, Tokens, load_credential
from device_agent.dispatcher import Agent
from device_agent.errors import DeviceAgentError, ExitCode
from device_agent.executor import Executor
from device_agent.journal import AsyncJournal, Journal
from device_agent.profiles import load_profiles
from device_agent.settings import Settings
from device_agent.sleepwatch import Clock

log = structlog.get_logger(__name__)


async def run_agent(
    settings: Settings,
    *,
    token: str,
    worker_id: str,
    once: bool = False,
    clock: Clock | None = None,
    handle_signals: bool = True,
    started: Callable[[Agent], None] | None = None,
    wake_check_seconds: float = 5.0,
    poll_alarm: Alarm | None = None,
) -> ExitCode:
    """Run the agent until stopped (or one poll with `once`). Call with the instance lock held:
    the control socket it opens belongs to the one agent of its home."""
    profiles = load_profiles(user_dir=settings.paths.profiles_dir)
    journal = AsyncJournal(
        Journal(settings.paths.journal_file, output_cap=settings.executor.stdout_cap_bytes)
    )
    client = LobuClient(
        settings.origin,
        lambda: tokens.current(),
        request_timeout=settings.request_timeout_seconds,
        poll_timeout=settings.poll_timeout_seconds,
    )
    tokens = Tokens(settings, token)
    executor = Executor(
        settings.executor, profiles, secrets=(token,), scratch_dir=settings.paths.state_dir / "runs"
    )
    loop = asyncio.get_running_loop()

    agent = Agent(
        settings,
        platform=await _registered_platform(settings),
        worker_id=worker_id,
        client=client,
        executor=executor,
        journal=journal,
        tokens=tokens,
        clock=clock,
        wake_check_seconds=wake_check_seconds,
        poll_alarm=poll_alarm,
    )
    if handle_signals:
        _install_signals(loop, agent)
    try:
        pruned = await journal.call(
            journal.sync.prune,
            keep_days=settings.journal.keep_days,
            keep_rows=settings.journal.keep_rows,
        )
        log.info(
            "agent starting",
            server=settings.origin,
            worker_id=worker_id,
            once=once,
            concurrency=settings.concurrency,
            pruned_journal_rows=pruned,
        )
        await _remember_targets(agent, journal)
        orphans = await executor.recover()
        if orphans:
            log.warning("stopped CLIs left running by a previous agent", groups=orphans)
        async with _control_socket(settings, agent):
            if started is not None:
                started(agent)
            return await agent.run(once=once)
    finally:
        if handle_signals:
            _remove_signals(loop)
        await client.aclose()
        journal.close()


async def _remember_targets(agent: Agent, journal: AsyncJournal) -> None:
    """What this device ran before, for "Run now" in the tray, oldest first so the newest
    ends up on top."""
    recent = await journal.call(journal.sync.recent, MAX_TARGETS)
    for entry in reversed(recent):
        if entry.server == agent.server and entry.watcher_id:
            name = entry.watcher_name or entry.watcher_id
            agent.pipeline.board.remember(Target(entry.watcher_id, entry.run_type, name))


@contextlib.asynccontextmanager
async def _control_socket(settings: Settings, agent: Agent) -> AsyncIterator[ControlServer | None]:
    """The control socket `status`, `pause`, `resume`, `trigger` and the tray talk to; closed
    after the drain. Without it the agent still works: status falls back to the journal."""
    try:
        server = ControlServer(socket_path(settings.paths.state_dir), AgentControl(agent))
        await server.start()
    except ControlError as exc:
        log.error("no control socket: `status` and `trigger` cannot reach us", error=str(exc))
        yield None
        return
    try:
        yield server
    finally:
        await server.close()


async def _registered_platform(settings: Settings) -> str:
    """The platform a child token was minted with (a bound token must poll with it), else the
    configured one."""
    if settings.token:
        return settings.platform
    try:
        credential = await asyncio.to_thread(load_credential, settings)
    except (CredentialError, DeviceAgentError) as exc:
        log.debug("no stored credential to read the platform from", error=str(exc))
        return settings.platform
    return credential.platform if credential and credential.platform else settings.platform


def _install_signals(loop: asyncio.AbstractEventLoop, agent: Agent) -> None:
    loop.add_signal_handler(signal.SIGTERM, agent.request_stop)
    loop.add_signal_handler(signal.SIGINT, agent.request_stop)
    loop.add_signal_handler(signal.SIGUSR1, agent.poll_now)  # a poke from an older `trigger`


def _remove_signals(loop: asyncio.AbstractEventLoop) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        loop.remove_signal_handler(sig)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # a late poke must not kill us on the way out
