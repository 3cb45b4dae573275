"""Assemble an agent from settings and run it: what `run`, `demo` and the tests share."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Final

from device_agent.agent.activity import MAX_TARGETS
from device_agent.agent.alarm import Alarm
from device_agent.agent.daily_limit import RECHECK_SECONDS
from device_agent.agent.journal import Journal, Retention
from device_agent.agent.journal_thread import AsyncJournal
from device_agent.agent.limits import Reached
from device_agent.agent.poll_loop import PollLoop
from device_agent.agent.result import Report
from device_agent.agent.sleepwatch import Clock
from device_agent.agent.status import AgentState, Status
from device_agent.config import ConfigError, Settings
from device_agent.desktop.control import ControlServer
from device_agent.desktop.control_client import ControlError, Target, socket_path
from device_agent.desktop.control_handler import AgentControl
from device_agent.desktop.notify.backends import Backend
from device_agent.desktop.notify.config import NotificationSettings
from device_agent.desktop.notify.notifier import Notifier, find_backend
from device_agent.desktop.notify.policy import FinishedRun
from device_agent.desktop.sdnotify import SystemdNotifier
from device_agent.errors import ExitCode
from device_agent.executors.executor import Executor
from device_agent.executors.profiles import Profile, load_profiles
from device_agent.identity.credentials import binding_problem, device_platform, stored_credential
from device_agent.identity.errors import AuthRefused
from device_agent.identity.tokens import Tokens
from device_agent.lanes import LaneRun
from device_agent.lanes.chat.lane import ChatClaim
from device_agent.lanes.watcher.lane import WatcherClaim
from device_agent.logs import get_logger
from device_agent.server.client import LobuClient

log = get_logger(__name__)

ROTATION_CHECK_SECONDS: Final = 3600.0  # how often an idle agent asks whether its token is due


def find_notifier(settings: NotificationSettings) -> Backend | None:
    """The program that shows notifications here (tests replace this to keep the desktop
    quiet); looked for when the first run has finished."""
    return find_backend(settings)


async def run_agent(
    settings: Settings,
    *,
    token: str,
    worker_id: str,
    once: bool = False,
    clock: Clock | None = None,
    handle_signals: bool = True,
    started: Callable[[PollLoop], None] | None = None,
    wake_check_seconds: float = 5.0,
    poll_alarm: Alarm | None = None,
    systemd: SystemdNotifier | None = None,
    notifier: Notifier | None = None,
    profiles: Mapping[str, Profile] | None = None,
    limit_check_seconds: float = RECHECK_SECONDS,
) -> ExitCode:
    """Run the agent until stopped (or one poll with `once`). Call with the instance lock held:
    the control socket it opens belongs to the one agent of its home. `profiles` are the
    executor profiles already read (by `run`, to check them); None reads them here."""
    systemd = systemd or SystemdNotifier(None)
    notifications = Notifications(settings.notifications, notifier)
    # A child token's device row keeps the platform it was minted with; a poll with another
    # one is refused (docs/protocol.md, "Identities").
    credential = await asyncio.to_thread(stored_credential, settings)
    problem = binding_problem(credential, worker_id)
    if problem is not None:
        raise ConfigError(problem)
    platform = device_platform(credential)
    if platform is not None and platform != settings.platform:
        settings = dataclasses.replace(settings, platform=platform)
    if profiles is None:
        profiles = load_profiles(user_dir=settings.paths.profiles_dir)
    journal = AsyncJournal(
        Journal(
            settings.paths.journal_file,
            output_cap=settings.executor.stdout_cap_bytes,
            retention=Retention(
                keep_days=settings.journal.keep_days,
                keep_rows=settings.journal.keep_rows,
                keep_output_bytes=settings.journal.keep_output_bytes,
            ),
        )
    )
    client = LobuClient(
        settings.origin,
        lambda: tokens.current(),
        request_timeout=settings.request_timeout_seconds,
        poll_timeout=settings.poll_timeout_seconds,
    )
    tokens = Tokens(settings, token)
    executor = Executor(
        settings.executor,
        profiles,
        secrets=(token,),
        scratch_dir=settings.paths.state_dir / "runs",
        tidy_in_background=True,  # the next run need not wait for the last one's `rm -rf`
    )
    loop = asyncio.get_running_loop()

    agent = PollLoop(
        settings,
        platform=settings.platform,
        worker_id=worker_id,
        client=client,
        executor=executor,
        journal=journal,
        tokens=tokens,
        clock=clock,
        wake_check_seconds=wake_check_seconds,
        poll_alarm=poll_alarm,
        on_status=SystemdStatus(systemd),
        limit_check_seconds=limit_check_seconds,
    )
    agent.pipeline.on_finished = notifications.submit
    agent.limit.on_reached = notifications.limit_reached
    if handle_signals:
        _install_signals(loop, agent)
    watchdog = asyncio.create_task(systemd.keep_watchdog())
    rotation: asyncio.Task[None] | None = None
    try:
        upkeep = await journal.call(journal.sync.prune)  # then as runs settle (`Retention.every`)
        log.info(
            "agent starting",
            server=settings.origin,
            worker_id=worker_id,
            once=once,
            concurrency=settings.concurrency,
            pruned_journal_rows=upkeep.pruned,
        )
        await _remember_targets(agent, journal)
        executor.recover_in_background().add_done_callback(_report_recovery)
        # Ready now: waiting for the server would hold `systemctl start` hostage.
        systemd.ready(f"polling {settings.origin} as {worker_id}")
        # A token due for rotation is re-minted before the first poll; a stop cancels that
        # (each account request also has its own deadline). AuthRefused: log in again (exit 3).
        if not await agent.until_stopped(tokens.rotate_if_due()):
            log.info("stopped while renewing the device token, before the first poll")
            return ExitCode.OK
        if not once:
            rotation = asyncio.create_task(_keep_token_fresh(tokens, agent))
        async with _control_socket(settings, agent):
            if started is not None:
                started(agent)
            return await agent.run(once=once)
    finally:
        for task in (watchdog, rotation):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if handle_signals:
            _remove_signals(loop)
        await executor.aclose()
        await notifications.aclose()
        await client.aclose()
        journal.close()


async def _remember_targets(agent: PollLoop, journal: AsyncJournal) -> None:
    """What this device ran before, for "Run now" in the tray, oldest first so the newest
    ends up on top."""
    recent = await journal.call(journal.sync.recent, MAX_TARGETS)
    for entry in reversed(recent):
        if entry.server == agent.server and entry.watcher_id:
            name = entry.watcher_name or entry.watcher_id
            agent.pipeline.board.remember(Target(entry.watcher_id, entry.run_type, name))


@contextlib.asynccontextmanager
async def _control_socket(
    settings: Settings, agent: PollLoop
) -> AsyncIterator[ControlServer | None]:
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


class SystemdStatus:
    """Tells systemd what the agent's status says: STOPPING=1 on the first stop request,
    otherwise the state as the unit's STATUS line."""

    def __init__(self, systemd: SystemdNotifier) -> None:
        self.systemd = systemd
        self._told_stopping = False

    def __call__(self, status: Status) -> None:
        if status.state is AgentState.STOPPING:
            if not self._told_stopping:
                self._told_stopping = True
                self.systemd.stopping("finishing running runs before stopping")
            return
        self.systemd.status(f"{status.state}" + (f": {status.detail}" if status.detail else ""))


class Notifications:
    """The agent's notifier, made when the first run has finished."""

    def __init__(self, settings: NotificationSettings, notifier: Notifier | None) -> None:
        self.settings = settings
        self.notifier = notifier

    def submit(self, run: LaneRun, report: Report) -> None:
        if isinstance(run, ChatClaim):
            return  # its reply, or its error, is posted to the conversation the person is in
        self._notifier().submit(finished_run(run, report))

    def limit_reached(self, reached: Reached) -> None:
        """The owner's daily limit is reached (told once a day): one notice on the desktop."""
        self._notifier().notice(
            "device-agent: daily limit reached",
            f"{reached.amount} today; no new runs until the day turns. "
            "`device-agent resume --past-limit` goes on today.",
            key="daily-limit",
        )

    def _notifier(self) -> Notifier:
        if self.notifier is None:
            self.notifier = Notifier(self.settings, find=find_notifier)
        return self.notifier

    async def aclose(self) -> None:
        if self.notifier is not None:
            await self.notifier.aclose()


def finished_run(run: LaneRun, report: Report) -> FinishedRun:
    """What the notification policy needs to know about a settled run (watcher lane: the
    payload's channel and priority; other lanes: the config decides)."""
    watcher = run.run.watcher if isinstance(run, WatcherClaim) else None
    return FinishedRun(
        lane="watcher" if watcher is not None else "automation",
        target_id=run.item_id,
        name=run.name,
        ok=not report.failed,
        text=report.error or report.output,
        channel=watcher.notification_channel if watcher else None,
        priority=watcher.notification_priority if watcher else None,
    )


def _report_recovery(recovery: asyncio.Task[int]) -> None:
    """What cleaning up after a killed agent did, once done (it runs alongside the polls)."""
    if recovery.cancelled():
        return
    if (error := recovery.exception()) is not None:
        log.error(
            "could not clean up after a previous agent", error=f"{type(error).__name__}: {error}"
        )
    elif groups := recovery.result():
        log.warning("stopped CLIs left running by a previous agent", groups=groups)


async def _keep_token_fresh(tokens: Tokens, agent: PollLoop) -> None:
    """Re-mint the child token when due, only while no run is executing (docs/protocol.md,
    "Authentication and login"); `rotate_if_due` asks the server nothing until then."""
    while True:
        await asyncio.sleep(ROTATION_CHECK_SECONDS)
        if agent.pipeline.active:
            continue
        try:
            await tokens.rotate_if_due()
        except AuthRefused as exc:  # polls will say so too; status shows "log in again"
            log.error("authentication needed", error=str(exc))


def _install_signals(loop: asyncio.AbstractEventLoop, agent: PollLoop) -> None:
    loop.add_signal_handler(signal.SIGTERM, agent.request_stop)
    loop.add_signal_handler(signal.SIGINT, agent.request_stop)
    loop.add_signal_handler(signal.SIGUSR1, agent.poll_now)  # a poke from an older `trigger`


def _remove_signals(loop: asyncio.AbstractEventLoop) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        loop.remove_signal_handler(sig)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # a late poke must not kill us on the way out
