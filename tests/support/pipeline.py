"""The run pipeline as the agent builds it, for tests that drive one claim through it with a
stand-in executor against a respx-mocked server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from device_agent.agent.journal_thread import AsyncJournal
from device_agent.agent.outbox import Outbox
from device_agent.agent.pipeline import RunPipeline
from device_agent.config import Settings
from device_agent.identity.tokens import TokenSource
from device_agent.lanes import Lane, lane_for
from device_agent.server.client import LobuClient

WORKER = "w1"


class StaticToken(TokenSource):
    def current(self) -> str:
        return "owl_pat_" + "p" * 32


def pipeline_for(
    settings: Settings,
    client: LobuClient,
    journal: AsyncJournal,
    executor: Any,  # a test's stand-in with the Executor's methods the pipeline calls
    *,
    lanes: Callable[[str], Lane] = lane_for,
) -> RunPipeline:
    """A pipeline whose outbox retries at once (0.01 s backoff), with a fixed token."""
    outbox = Outbox(
        client,
        journal,
        server=settings.origin,
        worker_id=WORKER,
        server_error_budget=8,
        max_backoff=0.01,
        lanes=lanes,
    )
    return RunPipeline(
        settings,
        worker_id=WORKER,
        client=client,
        executor=executor,
        journal=journal,
        outbox=outbox,
        tokens=StaticToken(),
        lanes=lanes,
    )
