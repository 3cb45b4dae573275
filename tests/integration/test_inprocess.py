"""Agent behaviour that needs an injected clock or sleep: run in-process against the dev server."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from device_agent.agent.app import run_agent
from device_agent.agent.journal import Journal, JournalWriteError
from device_agent.agent.poll_loop import AUTH_RETRY_SECONDS, PollLoop
from device_agent.config import Paths, Settings, validate
from device_agent.devserver import DevServer, DevState
from device_agent.errors import ExitCode
from device_agent.identity.credentials import token_store
from device_agent.identity.device_token import local_init, mint_child_token
from device_agent.identity.http import account_client_for
from device_agent.server.client import LobuClient
from tests.support.agent import journal_rows
from tests.support.claims import watcher_answer
from tests.support.clock import FakeClock
from tests.support.devserver import poll_requests
from tests.support.inprocess import WORKER, RecordedWaits, settings_for, started_agent
from tests.support.waiting import wait_for_async


def demo_answer(run_id: int, *, name: str, prompt: str) -> dict[str, Any]:
    """A watcher run's poll answer, run by the offline demo executor."""
    changes = {"run_id": run_id, "watcher.name": name, "watcher.prompt": prompt}
    return watcher_answer(changes | {"watcher.agent_kind": "demo", "watcher.execution_config": {}})


def test_wake_from_sleep_polls_at_once(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forgotten: list[LobuClient] = []
    monkeypatch.setattr(LobuClient, "forget_connections", lambda self: forgotten.append(self))

    async def go() -> None:
        state = DevState(create_checkin_watcher=False, next_poll_seconds=3600)
        token = state.add_token()
        clock = FakeClock()
        async with DevServer(state) as server:
            task, agent = await started_agent(
                settings_for(server.url, token, isolated_home),
                token,
                clock=clock,
                wake_check_seconds=0.02,
            )
            await wait_for_async(lambda: poll_requests(state) == 1, what="the first poll")
            await wait_for_async(lambda: agent.status.state == "idle", what="idle")
            clock.suspend(3600)  # a closed lid: wall time jumps, monotonic time does not
            await wait_for_async(
                lambda: poll_requests(state) == 2,
                timeout=5,
                what="a poll right after waking (the server asked for 3600 s)",
            )
            assert agent.status.woke_at is not None
            assert forgotten == [agent.client]  # no kept-alive connection survives a sleep
            agent.request_stop()
            assert await task == ExitCode.OK

    asyncio.run(go())


def test_refused_token_is_retried_once_a_minute_not_hammered(isolated_home: Path) -> None:
    alarm = RecordedWaits(stop_after=3)

    async def go() -> None:
        state = DevState(create_checkin_watcher=False)
        state.add_token()
        bad = "owl_pat_" + "z" * 32

        async with DevServer(state) as server:
            code = await run_agent(
                settings_for(server.url, bad, isolated_home),
                token=bad,
                worker_id=WORKER,
                handle_signals=False,
                started=alarm.agents.append,
                poll_alarm=alarm,
            )
        assert code == ExitCode.OK
        assert alarm.agents[0].status.state == "stopped"
        assert "device-agent login" in (alarm.agents[0].status.last_error or "")
        assert poll_requests(state) == len(alarm.waits)  # one poll per wait: nothing in between

    asyncio.run(go())
    assert alarm.waits == [AUTH_RETRY_SECONDS] * 3


def test_an_unwritable_journal_is_probed_again_within_max_backoff(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(journal: Journal) -> None:
        raise JournalWriteError("database or disk is full")

    monkeypatch.setattr(Journal, "probe_write", full_disk)

    def journal_fails(agent: PollLoop) -> None:
        agent.journal.problem = "database or disk is full"
        alarm.agents.append(agent)

    alarm = RecordedWaits(stop_after=3)

    async def go() -> None:
        state = DevState(create_checkin_watcher=False)
        token = state.add_token()
        async with DevServer(state) as server:
            settings = settings_for(server.url, token, isolated_home)
            code = await run_agent(
                replace(settings, max_backoff_seconds=2.0),
                token=token,
                worker_id=WORKER,
                handle_signals=False,
                started=journal_fails,
                poll_alarm=alarm,
            )
        assert code == ExitCode.OK
        assert poll_requests(state) == 0  # no claim while a claimed run could not be recorded

    asyncio.run(go())
    assert alarm.waits == [2.0] * 3  # not JOURNAL_RETRY_SECONDS: past max_backoff_seconds


def test_unreachable_server_backs_off_with_growing_capped_waits(isolated_home: Path) -> None:
    token = "owl_pat_" + "q" * 32
    alarm = RecordedWaits(stop_after=8)
    waits = alarm.waits

    settings = settings_for("http://127.0.0.1:9", token, isolated_home)
    code = asyncio.run(
        run_agent(
            settings,
            token=token,
            worker_id=WORKER,
            handle_signals=False,
            started=alarm.agents.append,
            poll_alarm=alarm,
        )
    )
    assert code == ExitCode.OK
    assert all(0 < w <= settings.max_backoff_seconds for w in waits)
    assert waits[-1] > waits[0] * 4  # exponential, never a tight loop


def test_a_run_handed_over_twice_is_executed_once(isolated_home: Path) -> None:
    server = "http://127.0.0.1:9"
    token = "owl_pat_" + "r" * 32
    claim = demo_answer(5, name="twice", prompt="Only once")

    async def go() -> None:
        with respx.mock(base_url=server, assert_all_called=False) as mock:
            mock.post("/api/workers/poll").mock(
                side_effect=[
                    httpx.Response(200, json=claim),
                    httpx.Response(200, json=claim),
                    *[httpx.Response(200, json={"next_poll_seconds": 3600})] * 5,
                ]
            )
            mock.post("/api/workers/heartbeat").respond(200, json={"continue": True})
            completes = mock.post("/api/workers/me/runs/5/complete-watcher").respond(
                200, json={"ok": True, "status": "completed"}
            )
            task, agent = await started_agent(settings_for(server, token, isolated_home), token)
            await wait_for_async(lambda: completes.call_count == 2, what="two reports")
            agent.request_stop()
            assert await task == ExitCode.OK
            bodies = [json.loads(call.request.content) for call in completes.calls]
        results = sorted(bodies, key=lambda body: body["error"] is not None)
        assert results[0]["error"] is None  # the one execution's result
        assert results[0]["output"]
        assert "never executes a run twice" in results[1]["error"]

    asyncio.run(go())
    rows = list(journal_rows(isolated_home).values())
    assert len(rows) == 1
    assert rows[0]["answer"] == "completed"  # the first result is untouched


def test_a_new_login_is_picked_up_after_401s(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from device_agent.identity import credentials, tokens
    from device_agent.identity.store import Credential

    keyring = {"token": "owl_pat_" + "o" * 32}  # revoked: the server does not know it

    def stored(settings: Settings) -> Credential:
        return Credential(token=keyring["token"])

    monkeypatch.setattr(credentials, "load_credential", stored)  # read at the start
    monkeypatch.setattr(tokens, "load_credential", stored)  # and by `Tokens` after a 401
    state = DevState(create_checkin_watcher=False)
    fresh = state.add_token()

    def log_in_again() -> None:
        keyring["token"] = fresh  # the user ran `device-agent login` meanwhile

    alarm = RecordedWaits(stop_after=2, before_each=log_in_again)

    async def go() -> None:

        async with DevServer(state) as server:
            settings = validate(
                Settings(
                    server=server.url,
                    worker_id=WORKER,
                    default_agent="demo",
                    paths=Paths.resolve({"DEVICE_AGENT_HOME": str(isolated_home)}),
                )
            )
            code = await run_agent(
                settings,
                token=keyring["token"],
                worker_id=WORKER,
                handle_signals=False,
                started=alarm.agents.append,
                poll_alarm=alarm,
            )
        assert code == ExitCode.OK
        statuses = [r.status for r in state.requests if r.path == "/api/workers/poll"]
        assert statuses == [401, 401, 200]

    asyncio.run(go())
    assert alarm.waits[0] == AUTH_RETRY_SECONDS


def test_a_claim_that_arrives_after_the_stop_is_reported_not_started(isolated_home: Path) -> None:
    server = "http://127.0.0.1:9"
    token = "owl_pat_" + "s" * 32
    claim = demo_answer(8, name="late", prompt="Too late")
    agents: list[PollLoop] = []

    def poll_during_which_the_user_stops_us(request: httpx.Request) -> httpx.Response:
        agents[0].request_stop()
        return httpx.Response(200, json=claim)

    async def go() -> dict[str, Any]:
        with respx.mock(base_url=server) as mock:
            mock.post("/api/workers/poll").mock(side_effect=poll_during_which_the_user_stops_us)
            mock.post("/api/workers/heartbeat").respond(200, json={"continue": True})
            complete = mock.post("/api/workers/me/runs/8/complete-watcher").respond(
                200, json={"ok": True, "status": "failed"}
            )
            code = await run_agent(
                settings_for(server, token, isolated_home),
                token=token,
                worker_id=WORKER,
                handle_signals=False,
                started=agents.append,
            )
            assert code == ExitCode.OK
            body: dict[str, Any] = json.loads(complete.calls.last.request.content)
        return body

    body = asyncio.run(go())
    assert body["exit_reason"] == "cancelled"
    assert "not started" in body["error"]


def test_an_idle_agent_rotates_its_device_token_and_polls_with_the_new_one(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("device_agent.agent.app.ROTATION_CHECK_SECONDS", 0.05)

    async def go() -> None:
        state = DevState(create_checkin_watcher=False, next_poll_seconds=0.05)
        async with DevServer(state) as server:
            settings = settings_for(server.url, None, isolated_home)
            store = token_store(settings)
            async with account_client_for(settings) as client:
                user = await local_init(client)
                first = await mint_child_token(client, user.token, worker_id=WORKER, label="t")
            store.save(first)  # 90 days left: nothing to do at start
            task, agent = await started_agent(settings, first.token)
            await wait_for_async(lambda: poll_requests(state) >= 1, what="the first poll")
            assert state.live_token(first.token) is not None
            # Time passes: 10 days left. The idle agent re-mints, stores, then uses the new one.
            store.save(replace(first, expires_at=time.time() + 10 * 86400))
            # The server revokes the old token when it mints the new one; the agent stores the
            # new one as soon as the answer arrives — wait for that, not for the revocation.
            fresh = await wait_for_async(
                lambda: (c := store.load()) is not None and c.token != first.token and c,
                what="the new token stored",
            )
            assert state.live_token(first.token) is None  # the old one is revoked
            assert state.live_token(fresh.token) is not None
            seen = len(state.requests)  # the old token is dead: only the new one polls with 200
            await wait_for_async(
                lambda: any(
                    r.path == "/api/workers/poll" and r.status == 200 for r in state.requests[seen:]
                ),
                what="a poll accepted after the rotation",
            )
            assert agent.status.state != "auth_needed"
            agent.request_stop()
            assert await task == ExitCode.OK

    asyncio.run(go())


def test_a_timed_out_poll_shows_in_status_that_a_run_may_have_been_claimed(
    isolated_home: Path,
) -> None:
    """A poll that got no answer in time may still have claimed a run on the server: the
    status says so, with what to do (docs/protocol.md, "Long-poll")."""
    alarm = RecordedWaits(stop_after=1)
    url = "http://127.0.0.1:9"  # respx answers: nothing is sent
    with respx.mock(base_url=url, assert_all_called=False) as server:
        polls = server.post("/api/workers/poll").mock(side_effect=httpx.ReadTimeout("slow"))
        code = asyncio.run(
            run_agent(
                settings_for(url, "owl_pat_" + "t" * 32, isolated_home),
                token="owl_pat_" + "t" * 32,
                worker_id=WORKER,
                handle_signals=False,
                started=alarm.agents.append,
                poll_alarm=alarm,
            )
        )
    assert code == ExitCode.OK
    assert polls.call_count == 1
    status = alarm.agents[0].status
    shown = f"{status.detail} {status.last_error or ''}"
    assert "a run may have been claimed and not received" in shown
    assert "raise poll_timeout_seconds" in shown


def test_a_poll_that_timed_out_is_noted_for_status(isolated_home: Path) -> None:
    from device_agent.cli.status import gather

    server = "http://127.0.0.1:9"
    token = "owl_pat_" + "t" * 32
    settings = settings_for(server, token, isolated_home)

    async def go() -> ExitCode:
        with respx.mock(base_url=server) as mock:
            mock.post("/api/workers/poll").mock(side_effect=httpx.ReadTimeout("no answer"))
            return await run_agent(
                settings, token=token, worker_id=WORKER, once=True, handle_signals=False
            )

    assert asyncio.run(go()) == ExitCode.UNREACHABLE
    abandoned = gather(settings)["poll_abandoned"]
    assert abandoned is not None
    assert abandoned["reason"].startswith("it timed out")
