"""Assemble an agent from settings and run it: what `run`, `demo` and the tests share."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import structlog

from device_agent.alarm import Alarm
from device_agent.client import LobuClient
from device_agent.credentials import CredentialError, Tokens, load_credential
from device_agent.dispatcher import Agent
from device_agent.errors import DeviceAgentError, ExitCode
from device_agent.executor import Executor
from device_agent.journal import AsyncJournal, Journal
from device_agent.profiles import load_profiles
from device_agent.settings import Settings
from device_agent.sleepwatch import Clock
from device_agent.status import Status
from device_agent.statusfile import write_status

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
    status_path = settings.paths.state_dir / "status.json"
    loop = asyncio.get_running_loop()

    last_written: list[object] = [None]

    def publish(status: Status) -> None:
        # Written only when something a user would see changed: a few hundred bytes, rarely.
        shown = (
            status.state,
            status.detail,
            tuple(status.running),
            tuple(status.rounds.items()),
            status.woke_at,
        )
        if shown == last_written[0]:
            return
        last_written[0] = shown
        extra = {"server": settings.origin, "worker_id": worker_id, "once": once}
        try:
            write_status(status_path, status, **extra)
        except OSError as exc:
            log.warning("cannot write the status file", path=str(status_path), error=str(exc))

    agent = Agent(
        settings,
        platform=await _registered_platform(settings),
        worker_id=worker_id,
        client=client,
        executor=executor,
        journal=journal,
        tokens=tokens,
        clock=clock,
        on_status=publish,
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
        orphans = await executor.recover()
        if orphans:
            log.warning("stopped CLIs left running by a previous agent", groups=orphans)
        if started is not None:
            started(agent)
        return await agent.run(once=once)
    finally:
        if handle_signals:
            _remove_signals(loop)
        await client.aclose()
        journal.close()


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
    loop.add_signal_handler(signal.SIGUSR1, agent.poll_now)  # `device-agent trigger` pokes us


def _remove_signals(loop: asyncio.AbstractEventLoop) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        loop.remove_signal_handler(sig)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # a late poke must not kill us on the way out
