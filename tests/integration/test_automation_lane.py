"""The automation lane end to end: the agent in-process against the dev server in
automation mode, with a fake Claude Code that finalizes through the run's MCP session."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from device_agent.agent.app import run_agent
from device_agent.agent.poll_loop import UPGRADE_CHECK_SECONDS, PollLoop
from device_agent.devserver import DevServer
from device_agent.errors import ExitCode
from tests.support.agent import journal_rows
from tests.support.devserver import poll_requests
from tests.support.inprocess import RecordedWaits, started_agent
from tests.support.lanelab import AUTOMATION_WORKER as WORKER
from tests.support.lanelab import AutoLab, settled
from tests.support.processes import alive
from tests.support.waiting import wait_for, wait_for_async


def test_a_run_is_claimed_after_registration_and_completed_through_its_session(
    auto: AutoLab,
) -> None:
    async def go() -> None:
        run_id = auto.state.queue_automation_run(auto.automation("Summarise the inbox"))
        async with auto.agent():
            await wait_for_async(settled(auto.state, run_id), what="the run to complete")
        run = auto.state.run(run_id)
        assert run.status == "completed"
        assert len(run.windows_completed) == 1  # through the MCP session, by the CLI itself
        assert run.exit_reason == "ok"
        device = auto.state.device(WORKER)
        assert device is not None
        assert device.platform == "headless"
        assert device.capabilities == {"automations.execute": True}
        assert len(auto.executions()) == 1
        assert journal_rows(auto.home)[run_id]["state"] == "acknowledged"

    asyncio.run(go())


def test_a_cli_given_an_agent_session_sees_only_the_session_token(auto: AutoLab) -> None:
    async def go() -> None:
        run_id = auto.state.queue_automation_run(auto.automation("Summarise"))
        async with auto.agent():
            await wait_for_async(settled(auto.state, run_id), what="the run to complete")
        session = auto.state.run(run_id).session_token
        assert session is not None
        seen = auto.seen()
        env = seen["env"]
        assert env["LOBU_API_TOKEN"] == session
        assert env["LOBU_MEMORY_URL"].endswith("/mcp/dev")
        everything = json.dumps(seen)  # argv, environment, MCP file, prompt
        assert auto.token not in everything
        assert seen["mcp"]["mode"] == "0o600"
        assert seen["mcp"]["content"]["mcpServers"]["lobu"]["headers"] == {
            "Authorization": f"Bearer {session}"
        }
        assert "--allowedTools" in seen["argv"]

    asyncio.run(go())
    assert not Path(auto.seen()["mcp"]["path"]).exists()  # deleted after the run


def test_nothing_is_claimed_when_no_cli_is_installed(
    auto: AutoLab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.local/bin with a real CLI in it

    async def go() -> None:
        run_id = auto.state.queue_automation_run(auto.automation("Summarise"))
        async with auto.agent() as (_, agent):
            # Held, not answered with the run: the server looked and found nothing for us.
            await wait_for_async(lambda: auto.state.held_polls >= 1, what="a held poll")
            assert await agent.agent_kinds.current() == []
        assert auto.state.run(run_id).status == "pending"

    asyncio.run(go())


def test_a_missing_complete_window_is_resumed_and_completed_on_round_two(auto: AutoLab) -> None:
    async def go() -> None:
        automation = auto.automation("Summarise [[forget]]", max_attempts=2)
        run_id = auto.state.queue_automation_run(automation)
        rounds_shown: list[dict[int, int]] = []
        async with auto.agent() as (_, agent):
            done = settled(auto.state, run_id)
            await wait_for_async(
                lambda: rounds_shown.append(dict(agent.status.rounds)) or done(),
                what="the run to complete",
            )
        assert {run_id: 2} in rounds_shown  # status said "round 2"
        assert auto.state.run(run_id).status == "completed"
        prompts = [e["prompt"] for e in auto.executions()]
        assert len(prompts) == 2
        assert "FINALIZE NUDGE" not in prompts[0]
        assert "FINALIZE NUDGE" in prompts[1]
        assert journal_rows(auto.home)[run_id]["finalize_attempt"] == 1

    asyncio.run(go())


def test_a_run_that_never_completes_fails_when_the_budget_runs_out(auto: AutoLab) -> None:
    async def go() -> None:
        run_id = auto.state.queue_automation_run(auto.automation("[[never]]", max_attempts=2))
        async with auto.agent():
            await wait_for_async(settled(auto.state, run_id), what="the run to fail")
        run = auto.state.run(run_id)
        assert run.status == "failed"
        assert run.reason_code == "missing_complete_window"
        assert len(auto.executions()) == 3  # rounds 0, 1, 2: the budget, and no more

    asyncio.run(go())


def test_a_heartbeat_409_stops_the_cli_and_the_exit_report_is_still_sent(auto: AutoLab) -> None:
    async def go() -> None:
        run_id = auto.state.queue_automation_run(auto.automation("[[hang]]"))
        async with auto.agent():
            await wait_for_async(lambda: Path(f"{auto.reports}.1").exists(), what="the CLI")
            pid = auto.seen()["pid"]
            auto.state.cancel_run(run_id)
            await wait_for_async(lambda: not alive(pid), what="the CLI to be stopped")
            await wait_for_async(
                lambda: journal_rows(auto.home)[run_id]["state"] == "acknowledged",
                what="the exit report",
            )
        assert auto.state.run(run_id).status == "cancelled"
        reports = [r for r in auto.state.requests if r.path.endswith("/complete-automation")]
        assert len(reports) == 1
        row = journal_rows(auto.home)[run_id]
        assert row["answer"] == "cancelled (idempotent)"  # the server already owned the outcome
        assert json.loads(row["details"])["stopped_by"] == "heartbeat_409"
        assert row["exit_signal"] in ("SIGTERM", "SIGKILL")
        assert len(auto.executions()) == 1

    asyncio.run(go())


def test_shutdown_is_reported_as_cancelled(auto: AutoLab) -> None:
    async def go() -> None:
        run_id = auto.state.queue_automation_run(auto.automation("[[hang]]"))
        async with auto.agent():
            await wait_for_async(lambda: Path(f"{auto.reports}.1").exists(), what="the CLI")
        run = auto.state.run(run_id)
        assert run.status == "cancelled"
        assert run.reason_code == "device_daemon_shutdown"
        assert not alive(auto.seen()["pid"])

    asyncio.run(go())


def test_run_types_it_does_not_execute_are_failed_through_their_own_route(
    auto: AutoLab,
) -> None:
    async def go() -> None:
        action = auto.state.queue_raw_run(WORKER, "action", {"action_id": "a1"})
        async with auto.agent():
            await wait_for_async(
                lambda: any(r.path == "/api/workers/complete-action" for r in auto.state.requests),
                what="the action run to be failed",
            )
        assert auto.executions() == []
        assert journal_rows(auto.home)[action]["state"] in ("acknowledged", "dead")
        assert auto.state.run(action).status == "failed"

    asyncio.run(go())


def test_upgrade_required_stops_claiming_and_says_so(auto: AutoLab) -> None:
    async def go() -> None:
        auto.state.min_app_version = "99.0.0"
        run_id = auto.state.queue_automation_run(auto.automation("Summarise"))
        async with auto.agent() as (_, agent):
            await wait_for_async(
                lambda: "newer device-agent" in agent.status.detail, what="the status"
            )
            assert "Update the headless worker" in (agent.status.upgrade_required or "")
        assert auto.state.run(run_id).status == "pending"
        polls = [r for r in auto.state.requests if r.path == "/api/workers/poll"]
        assert len(polls) == 1  # the next check is UPGRADE_CHECK_SECONDS away
        assert UPGRADE_CHECK_SECONDS >= 600

    asyncio.run(go())


def test_run_once_exits_2_on_upgrade_required(auto: AutoLab) -> None:
    async def go() -> None:
        auto.state.min_app_version = "99.0.0"
        async with DevServer(auto.state) as server:
            code = await run_agent(
                auto.settings(server.url),
                token=auto.token,
                worker_id=WORKER,
                once=True,
                handle_signals=False,
            )
        assert code == ExitCode.CONFIG

    asyncio.run(go())


def test_a_crash_in_the_middle_of_a_resume_round_is_reported_once(auto: AutoLab) -> None:
    run_id = auto.state.queue_automation_run(
        auto.automation("Summarise [[forget-then-hang]]", max_attempts=3)
    )
    with DevServer(auto.state).running_in_thread() as server:
        agent = auto.agent_process(server.url)
        try:
            wait_for(lambda: Path(f"{auto.reports}.2").exists(), what="the resume round's CLI")
            agent.send_signal(signal.SIGKILL)  # a crash: nothing is reported on the way out
            agent.communicate(timeout=30)
            round_two = auto.seen(2)["pid"]
            assert auto.state.run(run_id).status == "running"

            again = auto.run_once(server.url)
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.communicate()
        assert again.returncode == 0, again.stderr
    run = auto.state.run(run_id)
    assert run.status == "failed"
    assert "restarted" in (run.error or "")
    reports = [r for r in auto.state.requests if r.path.endswith("/complete-automation")]
    assert len(reports) == 2  # round 0's exit report, then the crash report: once
    assert len(auto.executions()) == 2  # the interrupted round was not run again
    wait_for(lambda: not alive(round_two), what="the orphaned CLI to be stopped on restart")
    assert journal_rows(auto.home)[run_id]["finalize_attempt"] == 1


def test_trigger_uses_the_lane_this_device_has_seen(
    auto: AutoLab, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from device_agent.cli.main import main

    automation = auto.automation("Summarise")
    bound = auto.state.add_token(bound_worker_id=WORKER)
    first = auto.state.queue_automation_run(automation)
    with DevServer(auto.state).running_in_thread() as server:
        monkeypatch.setenv("DEVICE_AGENT_SERVER", server.url)
        monkeypatch.setenv("DEVICE_AGENT_TOKEN", bound)
        monkeypatch.setenv("DEVICE_AGENT_WORKER_ID", WORKER)
        assert main(["run", "--once"]) == ExitCode.OK  # the journal now knows this lane
        assert auto.state.run(first).status == "completed"
        assert main(["trigger", automation]) == ExitCode.OK
        assert main(["trigger", "999", "--lane", "watcher"]) != ExitCode.OK
    out, err = capsys.readouterr()
    assert f"automation {automation}: run " in out
    assert "queued" in out
    assert "999" in err
    triggered = [r.path for r in auto.state.requests if r.path.endswith("/trigger")]
    assert triggered == [
        f"/api/workers/me/automations/{automation}/trigger",
        "/api/workers/me/watchers/999/trigger",
    ]


def test_the_demo_shows_the_automation_lane_with_a_nudged_round_and_its_transcripts(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from device_agent.demo.session import AUTOMATIONS, run_demo

    assert run_demo(isolated_home / "demo") == ExitCode.OK
    out = capsys.readouterr().out
    rows = {
        name: line.split() for name, _ in AUTOMATIONS for line in out.splitlines() if name in line
    }
    first, nudged = (rows[name] for name, _ in AUTOMATIONS)
    assert first[first.index("check") + 1 : first.index("check") + 4] == ["1", "yes", "completed"]
    assert nudged[nudged.index("review") + 1 : nudged.index("review") + 4] == [
        "2",
        "yes",
        "completed",
    ]
    # The transcript each run's device uploaded, as the server stored it: the prompt, the
    # completeWindow call and its result, the answer — and the first round's too when nudged.
    assert "stored: 4 messages, completed" in " ".join(first)
    assert "stored: 6 messages, completed" in " ".join(nudged)


async def _started(
    auto: AutoLab, url: str, **overrides: Any
) -> tuple[asyncio.Task[ExitCode], PollLoop]:
    return await started_agent(auto.settings(url, **overrides), auto.token, worker_id=WORKER)


def test_a_run_claimed_into_the_poll_in_flight_at_a_stop_is_reported_not_started(
    auto: AutoLab,
) -> None:
    """The server claims a run into a held poll even after its client has gone (issue 21,
    point 2): the agent waits for that answer and reports the run at once, so it is not
    left running on the server for hours."""
    automation = auto.automation("Summarise")

    async def go() -> int:
        async with DevServer(auto.state) as server:
            task, agent = await _started(auto, server.url, shutdown_grace_seconds=30)
            await wait_for_async(lambda: auto.state.held_polls >= 1, what="a held poll")
            agent.request_stop()
            run_id = auto.state.queue_automation_run(automation)  # wakes the held poll
            assert await asyncio.wait_for(task, timeout=20) == ExitCode.OK
            return run_id

    run_id = asyncio.run(go())
    run = auto.state.run(run_id)
    assert run.claimed_by == WORKER
    assert run.status == "cancelled"  # reported, not left running
    assert run.reason_code == "device_daemon_shutdown"
    assert auto.executions() == []  # no CLI was started for it
    row = journal_rows(auto.home)[run_id]
    assert (row["state"], row["exit_reason"]) == ("acknowledged", "cancelled")
    assert "not started" in row["error"]


def test_a_stop_waits_for_a_held_poll_no_longer_than_the_grace_and_status_says_so(
    auto: AutoLab,
) -> None:
    from device_agent.cli.status import gather, render

    async def go() -> tuple[str, float]:
        async with DevServer(auto.state) as server:
            task, agent = await _started(auto, server.url, shutdown_grace_seconds=0.5)
            await wait_for_async(lambda: auto.state.held_polls >= 1, what="a held poll")
            agent.request_stop()
            started = time.monotonic()
            # Bounded well below the 25 s hold: the grace, not the hold, ends the wait.
            assert await asyncio.wait_for(task, timeout=10) == ExitCode.OK
            return server.url, time.monotonic() - started

    url, took = asyncio.run(go())
    assert took >= 0.4  # the poll was given its grace
    report = gather(auto.settings(url))
    abandoned = report["poll_abandoned"]
    assert abandoned is not None
    assert abandoned["reason"] == "the agent stopped before the server answered it"
    assert "poll abandoned: " in render(report)
    assert "shows as running on the server" in render(report)


def test_a_second_stop_request_abandons_the_poll_in_flight_at_once(auto: AutoLab) -> None:
    async def go() -> None:
        async with DevServer(auto.state) as server:
            task, agent = await _started(auto, server.url, shutdown_grace_seconds=60)
            await wait_for_async(lambda: auto.state.held_polls >= 1, what="a held poll")
            agent.request_stop()
            agent.request_stop()
            # Bounded well below the 25 s hold and the 60 s grace.
            assert await asyncio.wait_for(task, timeout=10) == ExitCode.OK

    asyncio.run(go())


def test_a_poll_answered_within_the_grace_is_not_noted_as_abandoned(auto: AutoLab) -> None:
    from device_agent.cli.status import gather

    async def go() -> str:
        async with DevServer(auto.state) as server:
            # The server holds for 1 s and answers idle: well inside the grace.
            task, agent = await _started(
                auto, server.url, wait_seconds=1, shutdown_grace_seconds=30
            )
            await wait_for_async(lambda: auto.state.held_polls >= 1, what="a held poll")
            agent.request_stop()
            assert await asyncio.wait_for(task, timeout=20) == ExitCode.OK
            return server.url

    url = asyncio.run(go())
    assert journal_rows(auto.home) == {}  # nothing was claimed
    assert gather(auto.settings(url))["poll_abandoned"] is None


def test_run_now_leaves_a_held_poll_to_receive_the_run(auto: AutoLab) -> None:
    """The server wakes a held poll when a run is queued and claims the run into its answer:
    cutting that poll short on "Run now" would strand the run (claimed, never received)."""
    from device_agent.devserver.faults import Fault

    automation = auto.automation("Summarise")
    # Every poll answer takes a while to arrive, as over a slow network.
    auto.state.faults.add(Fault(route="poll", kind="slow_answer", seconds=0.5, times=None))

    async def go() -> None:
        async with auto.agent() as (_, agent):
            await wait_for_async(lambda: auto.state.held_polls >= 1, what="a held poll")
            run_id = auto.state.queue_automation_run(automation)  # the server side of Run now
            await wait_for_async(
                lambda: auto.state.run(run_id).claimed_by == WORKER, what="the held poll's claim"
            )
            agent.poll_now()  # the agent side of Run now, while the answer is on its way
            await wait_for_async(
                lambda: auto.state.run(run_id).status == "completed", what="the run to complete"
            )

    asyncio.run(go())
    assert len(auto.executions()) == 1


def test_a_spent_hold_polls_again_at_once(auto: AutoLab) -> None:
    alarm = RecordedWaits(stop_after=1)

    async def go() -> None:
        async with DevServer(auto.state) as server:
            task = asyncio.create_task(
                run_agent(
                    auto.settings(server.url, wait_seconds=1),  # the server answers 0 after 1 s
                    token=auto.token,
                    worker_id=WORKER,
                    handle_signals=False,
                    started=alarm.agents.append,
                    poll_alarm=alarm,
                )
            )
            await wait_for_async(lambda: poll_requests(auto.state) >= 2, what="two held polls")
            alarm.agents[0].request_stop()
            assert await task == ExitCode.OK

    asyncio.run(go())
    assert alarm.waits == []  # never a pause between them
