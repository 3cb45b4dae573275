"""The heartbeat's rhythm: first beat at once, one beat after a wake, stop on 409."""

from __future__ import annotations

import asyncio

import respx

from device_agent.agent.heartbeat import Heartbeat
from device_agent.server.client import LobuClient
from tests.support.waiting import wait_for_async

ORIGIN = "http://127.0.0.1:9"


def test_a_wake_sends_one_beat_not_the_missed_ones() -> None:
    async def go() -> int:
        with respx.mock(base_url=ORIGIN) as mock:
            beats = mock.post("/api/workers/heartbeat").respond(200, json={"continue": True})
            async with LobuClient(ORIGIN, lambda: "owl_pat_" + "h" * 32) as client:
                heartbeat = Heartbeat(client, run_id=1, worker_id="w", interval=3600)
                await heartbeat.start()
                assert beats.call_count == 1  # the first beat, right after the claim
                heartbeat.beat_now()  # the machine woke after sleeping through many intervals
                await wait_for_async(lambda: beats.call_count == 2)
                for _ in range(100):  # a burst would need no timer: let ready work run
                    await asyncio.sleep(0)
                await heartbeat.stop()
            return beats.call_count

    assert asyncio.run(go()) == 2


def test_a_409_marks_the_run_lost_and_stops_beating() -> None:
    async def go() -> tuple[bool, int]:
        with respx.mock(base_url=ORIGIN) as mock:
            beats = mock.post("/api/workers/heartbeat").respond(
                409, json={"error": "Run is not in progress"}
            )
            async with LobuClient(ORIGIN, lambda: "owl_pat_" + "h" * 32) as client:
                heartbeat = Heartbeat(client, run_id=1, worker_id="w", interval=0.01)
                await heartbeat.start()
                await heartbeat.stop()
            return heartbeat.lost.is_set(), beats.call_count

    assert asyncio.run(go()) == (True, 1)
