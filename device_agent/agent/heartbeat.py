"""Keep a claimed run alive on the server, and notice when the server lets go of it.

The first beat goes out right after the claim: the server reaps a run whose
last beat is three minutes old, but one that never beat only after two hours
(docs/protocol.md, "Heartbeat") — a crash before the first beat would strand it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from device_agent.logs import get_logger
from device_agent.server.client import Answer, AnswerKind, LobuClient

log = get_logger(__name__)

PERSISTENT_ERRORS: Final = 3  # this many 5xx in a row is worth an error log, not silence


class Heartbeat:
    """Beats every `interval` seconds until stopped; `lost` is set when the server says stop."""

    def __init__(self, client: LobuClient, *, run_id: int, worker_id: str, interval: float) -> None:
        self._client = client
        self._run_id = run_id
        self._worker_id = worker_id
        self._interval = interval
        self.lost = asyncio.Event()
        self.reason: str | None = None
        self._now = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._server_errors = 0

    async def start(self) -> Answer:
        """Send the first beat and start the rhythm. Returns the first answer."""
        answer = await self._beat()
        if not self.lost.is_set():
            self._task = asyncio.create_task(self._loop(), name=f"heartbeat-{self._run_id}")
        return answer

    def beat_now(self) -> None:
        """After a wake from sleep: check at once that the run is still ours (one beat)."""
        self._now.set()

    def retire(self) -> None:
        """Stop beating from outside the loop (no await needed); `stop` still cleans up."""
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while not self.lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._now.wait()
            self._now.clear()
            try:
                await self._beat()
            except Exception:  # one bad beat must not end the lease for good
                log.exception("heartbeat failed unexpectedly", run_id=self._run_id)

    async def _beat(self) -> Answer:
        answer = await self._client.heartbeat(run_id=self._run_id, worker_id=self._worker_id)
        bound = log.bind(run_id=self._run_id)
        if answer.kind is AnswerKind.FINAL:
            self.reason = answer.describe()
            bound.warning("server stopped the run", answer=self.reason)
            self.lost.set()
        elif answer.kind is AnswerKind.OK:
            self._server_errors = 0
        elif answer.server_fault:
            self._server_errors += 1
            level = bound.error if self._server_errors >= PERSISTENT_ERRORS else bound.warning
            level("heartbeat failed", answer=answer.describe(), in_a_row=self._server_errors)
        else:
            bound.warning("heartbeat failed", answer=answer.describe())
        return answer
