"""The running agent as the control socket sees it (docs/desktop.md, "control socket").

`AgentControl` adapts a `PollLoop` to `control.ControlHandler`: it answers
`status` from what the agent holds in memory (never a file or a blocking
call), forwards `pause`/`resume`/`poll_now`, and performs "Run now"
(docs/protocol.md, "Run now") with the account API, then polls at once.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from device_agent import __version__
from device_agent.agent.poll_loop import PollLoop
from device_agent.agent.status import PROBLEM_STATES
from device_agent.config import ENV_TOKEN
from device_agent.desktop.control import Refused
from device_agent.desktop.control_client import STATUS_SCHEMA_VERSION, Target
from device_agent.errors import ExitCode
from device_agent.identity.credentials import CredentialError, load_credential
from device_agent.identity.errors import AccountError
from device_agent.identity.http import account_client_for
from device_agent.identity.run_now import trigger
from device_agent.lanes import RUN_NOW_LANES, trigger_lane


class AgentControl:
    def __init__(self, agent: PollLoop) -> None:
        self.agent = agent

    def status(self) -> dict[str, Any]:
        agent, status = self.agent, self.agent.status
        problems = [status.detail] if status.state in PROBLEM_STATES and status.detail else []
        problems += status.notes(time.time())
        return {
            "schema_version": STATUS_SCHEMA_VERSION,
            "version": __version__,
            "pid": os.getpid(),
            "server": agent.server,
            "worker_id": agent.worker_id,
            "state": str(status.state),
            "detail": status.detail,
            "paused": agent.paused,
            "runs": agent.pipeline.board.runs(),
            "last_poll_at": status.last_poll_at,  # epoch seconds, as the tray reads it
            # Results the outbox has tried and not delivered yet; `status` adds the rest
            # from the journal.
            "backlog": [
                {"run_id": run_id, "waiting_because": why}
                for run_id, why in agent.outbox.waiting.items()
            ],
            "problems": problems,
            # Set only for a token from the daemon's own environment, which `status` in
            # another shell cannot see; a stored token it finds itself.
            "token_home": f"{ENV_TOKEN} (environment)" if agent.settings.token else None,
            # The day's usage and the owner's daily limits (`limits.limit_report`); its
            # `resumes_at` is epoch seconds, as `last_poll_at`.
            "limit": agent.limit.report(),
        }

    def poll_now(self) -> None:
        self.agent.poll_now()

    def pause(self) -> None:
        self.agent.pause()

    def resume(self) -> None:
        self.agent.resume()

    def resume_past_limit(self) -> dict[str, Any]:
        self.agent.resume_past_limit()
        return self.agent.limit.report()

    def targets(self) -> list[Target]:
        return self.agent.pipeline.board.targets()

    async def trigger(self, target_id: str, lane: str | None) -> dict[str, Any]:
        """Run now for `device-agent trigger` and the tray. A refusal carries the exit code
        the command would have ended with had it asked the server itself."""
        settings = self.agent.settings
        reached = self.agent.limit.reached
        if reached is not None:  # the run would only wait on the server until the day turns
            raise Refused(
                f"not queued: this device's {reached.message}. Run "
                "`device-agent resume --past-limit` to go on today, then Run now again",
                exit_code=ExitCode.CONFIG,
            )
        credential = await asyncio.to_thread(load_credential, settings)
        if credential is None:
            missing = CredentialError(f"no token for {settings.origin}: run `device-agent login`")
            raise Refused(missing.user_message(), exit_code=missing.exit_code)
        lane = lane or await self._last_lane()
        try:
            async with account_client_for(settings) as client:
                triggered = await trigger(
                    client,
                    credential,
                    item_id=target_id,
                    lane=lane,
                    worker_id=self.agent.worker_id,
                )
        except AccountError as exc:  # the server said no, or cannot be reached
            raise Refused(exc.user_message(), exit_code=exc.exit_code) from None
        self.agent.poll_now()
        return {
            "run_id": triggered.run_id,
            "already_queued": triggered.already_queued,
            "lane": lane,
            "message": triggered.describe(lane, target_id),
        }

    async def _last_lane(self) -> str:
        """The lane of the run this device claimed last, else the watcher lane
        (docs/protocol.md, "Run now")."""
        journal = self.agent.journal
        last_seen = await journal.call(
            journal.sync.latest_run_type, self.agent.settings.origin, RUN_NOW_LANES
        )
        return trigger_lane(None, last_seen).run_type
