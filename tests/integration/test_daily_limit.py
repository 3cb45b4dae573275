"""The owner's daily limit end to end (issue 23): the agent in-process against the dev server,
fake CLIs that report what each run cost in Claude Code's real shape, and a wall clock the
test sets (the owner's local calendar day)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from device_agent.agent.app import run_agent
from device_agent.agent.limits import next_midnight
from device_agent.agent.poll_loop import PollLoop
from device_agent.config import LimitSettings, Paths, Settings, validate
from device_agent.desktop.control_client import request, socket_path
from device_agent.desktop.notify import Backend, NotificationSettings
from device_agent.desktop.notify.notifier import Notifier
from device_agent.devserver import DevServer, DevState
from device_agent.errors import ExitCode
from device_agent.server.client import Answer
from tests.support.agent import install_fake, journal_rows
from tests.support.waiting import wait_for_async

WORKER = "headless:limits"


class Wall:
    """The owner's wall clock: real time moved to a day the test picks, and moved on by it."""

    def __init__(self, at: float) -> None:
        self.offset = at - time.time()

    def wall(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    def to_next_day(self) -> None:
        """00:00:02 of the next local day: the day turns while the agent runs."""
        self.offset += next_midnight(self.wall()) + 2 - self.wall()


@dataclass
class Lab:
    state: DevState
    token: str
    home: Path
    cli_log: Path
    tmp: Path
    wall: Wall = field(default_factory=lambda: Wall(next_midnight(time.time()) + 12 * 3600))
    polls: list[dict[str, Any]] = field(default_factory=list)  # every poll body the agent sent

    def settings(self, url: str, limits: LimitSettings, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "server": url,
            "token": self.token,
            "worker_id": WORKER,
            "default_agent": "claude-code",
            "heartbeat_seconds": 0.2,
            "max_backoff_seconds": 0.5,
            "shutdown_grace_seconds": 5,
            "limits": limits,
            "paths": Paths.resolve({"DEVICE_AGENT_HOME": str(self.home)}),
        } | overrides
        return validate(Settings(**values))

    @asynccontextmanager
    async def agent(
        self, limits: LimitSettings, notifier: Notifier | None = None, **overrides: Any
    ) -> AsyncIterator[PollLoop]:
        agents: list[PollLoop] = []

        def started(agent: PollLoop) -> None:
            poll = agent.client.poll

            async def recorded(body: dict[str, Any]) -> Answer:
                self.polls.append(body)
                return await poll(body)

            agent.client.poll = recorded  # type: ignore[method-assign]
            agents.append(agent)

        async with DevServer(self.state) as server:
            task = asyncio.create_task(
                run_agent(
                    self.settings(server.url, limits, **overrides),
                    token=self.token,
                    worker_id=WORKER,
                    handle_signals=False,
                    started=started,
                    clock=self.wall,
                    wake_check_seconds=0.05,
                    limit_check_seconds=0.05,
                    notifier=notifier,
                )
            )
            await wait_for_async(lambda: agents or task.done(), what="the agent to start")
            try:
                yield agents[0]
            finally:
                agents[0].request_stop()
                assert await task == ExitCode.OK

    def executions(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.cli_log.glob("*.json"))]

    def watcher(self, prompt: str, **kw: Any) -> str:
        return self.state.add_watcher(prompt=prompt, pinned_worker_id=WORKER, **kw)

    def automation(self, prompt: str, **kw: Any) -> str:
        return self.state.add_automation(prompt, name="Digest", pinned_worker_id=WORKER, **kw)


def done(state: DevState, run_id: int) -> Callable[[], bool]:
    return lambda: state.run(run_id).status in ("completed", "failed")


async def no_claim_while_the_loop_goes_round(agent: PollLoop, state: DevState, run_id: int) -> None:
    """The loop decides at least ten times more, and the run stays queued meanwhile."""
    checks = [0]
    check = agent.limit.check

    async def counted() -> Any:
        checks[0] += 1
        return await check()

    agent.limit.check = counted  # type: ignore[method-assign]
    try:
        await wait_for_async(lambda: checks[0] >= 10, what="the loop to look at the limit again")
    finally:
        agent.limit.check = check  # type: ignore[method-assign]
    run = state.run(run_id)
    assert (run.status, run.claims) == ("pending", 0)


@pytest.fixture
def lab(tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    bin_dir = tmp_path / "bin"
    install_fake(bin_dir, "claude")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    cli_log = tmp_path / "cli-log"
    cli_log.mkdir()
    monkeypatch.setenv("FAKE_CLI_LOG", str(cli_log))
    state = DevState(create_checkin_watcher=False, next_poll_seconds=0.2)
    return Lab(state, state.add_token(), isolated_home, cli_log, tmp_path)


@pytest.fixture
def auto_lab(tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    bin_dir = tmp_path / "bin"
    install_fake(bin_dir, "claude_automation", "claude")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    cli_log = tmp_path / "cli-log"
    cli_log.mkdir()
    monkeypatch.setenv("FAKE_CLI_LOG", str(cli_log))
    state = DevState(create_checkin_watcher=False, lane="automation", next_poll_seconds=0.2)
    return Lab(state, state.add_token(), isolated_home, cli_log, tmp_path)


# ---------------------------------------------------------------- watcher lane


def test_watcher_lane_at_the_limit_no_poll_until_the_day_turns(lab: Lab) -> None:
    """$1.00 a day, runs of $0.60: the second run crosses the limit and the third waits,
    unclaimed and unpolled for, until the owner's day turns."""

    async def go() -> None:
        first = lab.state.queue_run(lab.watcher("Digest [[cost=0.6]]", name="First"))
        async with lab.agent(LimitSettings(daily_usd=1.0)) as agent:
            await wait_for_async(done(lab.state, first), what="the first run")
            second = lab.state.queue_run(lab.watcher("Digest [[cost=0.6]]", name="Second"))
            await wait_for_async(done(lab.state, second), what="the second run")
            await wait_for_async(
                lambda: agent.status.state == "limit_reached", what="the limit to be reached"
            )
            assert agent.status.detail.startswith(
                "daily limit reached ($1.20 of $1.00); resumes at 00:00"
            )
            polls = len(lab.polls)
            third = lab.state.queue_run(lab.watcher("Digest [[cost=0.1]]", name="Third"))
            await no_claim_while_the_loop_goes_round(agent, lab.state, third)
            assert len(lab.polls) == polls  # a watcher-era server is not polled at all
            lab.wall.to_next_day()
            await wait_for_async(done(lab.state, third), what="the run, on the next day")
            assert lab.state.run(third).status == "completed"
            assert agent.status.state != "limit_reached"
        assert len(lab.executions()) == 3

    asyncio.run(go())


def test_reaching_the_limit_fires_one_desktop_notification(lab: Lab) -> None:
    shown = lab.tmp / "shown.jsonl"
    fake = lab.tmp / "notify-send"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(shown)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    fake.chmod(0o755)
    notifier = Notifier(NotificationSettings(), backend=Backend("notify-send", str(fake)))

    async def go() -> None:
        first = lab.state.queue_run(lab.watcher("Digest [[cost=0.6]]", name="First"))
        second = lab.state.queue_run(lab.watcher("Digest [[cost=0.6]]", name="Second"))
        async with lab.agent(LimitSettings(daily_usd=1.0), notifier=notifier) as agent:
            for run_id in (first, second):
                await wait_for_async(done(lab.state, run_id), what=f"run {run_id}")
            waiting = lab.state.queue_run(lab.watcher("Digest", name="Third"))
            await no_claim_while_the_loop_goes_round(agent, lab.state, waiting)
            await no_claim_while_the_loop_goes_round(agent, lab.state, waiting)
        await notifier.aclose()

    asyncio.run(go())
    # The runs' own results notify nobody (their watchers are canvas-only, the config is
    # off); the limit does, once, however often the loop looked at it.
    (argv,) = [json.loads(line) for line in shown.read_text().splitlines()]
    assert argv[-2] == "device-agent: daily limit reached"
    assert argv[-1].startswith("$1.20 of $1.00 today; no new runs until the day turns.")


def test_a_run_in_flight_when_the_limit_is_crossed_finishes_and_is_reported(lab: Lab) -> None:
    gate = lab.tmp / "let-the-slow-run-finish"

    async def go() -> None:
        slow = lab.state.queue_run(lab.watcher(f"Slow [[cost=0.3]] [[until={gate}]]", name="S"))
        quick = lab.state.queue_run(lab.watcher("Quick [[cost=1.5]]", name="Q"))
        async with lab.agent(LimitSettings(daily_usd=1.0), concurrency=2) as agent:
            await wait_for_async(done(lab.state, quick), what="the quick run")
            await wait_for_async(lambda: agent.limit.reached is not None, what="the limit")
            waiting = lab.state.queue_run(lab.watcher("Later", name="Later"))
            await no_claim_while_the_loop_goes_round(agent, lab.state, waiting)
            assert lab.state.run(slow).status == "running"  # still running, never killed
            gate.touch()
            await wait_for_async(done(lab.state, slow), what="the run in flight to be reported")
            assert lab.state.run(slow).status == "completed"
            assert lab.state.run(slow).output == f"Summary: Slow [[cost=0.3]] [[until={gate}]]"
            await no_claim_while_the_loop_goes_round(agent, lab.state, waiting)
            assert agent.limit.totals().cost_usd == pytest.approx(1.8)
        assert journal_rows(lab.home)[slow]["state"] == "acknowledged"

    asyncio.run(go())


def test_a_restart_keeps_the_day_s_totals_and_a_raised_limit_lets_runs_in(lab: Lab) -> None:
    async def go() -> None:
        first = lab.state.queue_run(lab.watcher("Digest [[cost=1.2]]", name="First"))
        async with lab.agent(LimitSettings(daily_usd=1.0)) as agent:
            await wait_for_async(done(lab.state, first), what="the first run")
            await wait_for_async(lambda: agent.limit.reached is not None, what="the limit")
        waiting = lab.state.queue_run(lab.watcher("Digest", name="Second"))
        async with lab.agent(LimitSettings(daily_usd=1.0)) as agent:
            await wait_for_async(
                lambda: agent.status.state == "limit_reached", what="the limit, after a restart"
            )
            await no_claim_while_the_loop_goes_round(agent, lab.state, waiting)
            assert agent.limit.totals().runs == 1
        async with lab.agent(LimitSettings(daily_usd=5.0)):  # the owner raised it
            await wait_for_async(done(lab.state, waiting), what="the run, under the new limit")

    asyncio.run(go())


def test_the_budget_passed_to_claude_code_never_exceeds_what_is_left(lab: Lab) -> None:
    async def go() -> None:
        asks_5 = {"max_budget_usd": 5}
        first = lab.state.queue_run(
            lab.watcher("First [[cost=0.4]]", name="A", execution_config=asks_5)
        )
        async with lab.agent(LimitSettings(daily_usd=1.0)):
            await wait_for_async(done(lab.state, first), what="the first run")
            second = lab.state.queue_run(lab.watcher("Second", name="B", execution_config=asks_5))
            await wait_for_async(done(lab.state, second), what="the second run")
            third = lab.state.queue_run(
                lab.watcher("Third", name="C", execution_config={"max_budget_usd": 0.25})
            )
            await wait_for_async(done(lab.state, third), what="the third run")
            fourth = lab.state.queue_run(lab.watcher("Fourth", name="D"))  # names no budget
            await wait_for_async(done(lab.state, fourth), what="the fourth run")

    asyncio.run(go())
    budgets = [
        float(run["argv"][run["argv"].index("--max-budget-usd") + 1]) for run in lab.executions()
    ]
    # $1.00 a day: 1.00 left, then 0.60 after the first run's 0.40; the server's 0.25 stands
    # (less than the 0.5579 left); a run that names no budget gets what is left. Each run of
    # the fake costs 0.0421 unless its prompt says otherwise.
    spent = [0.0, 0.4, 0.4421, 0.4842]
    assert budgets == pytest.approx([1.0, 0.6, 0.25, 0.5158])
    assert all(b <= 1.0 - s for b, s in zip(budgets, spent, strict=True))


def test_a_server_handing_over_a_run_the_device_did_not_ask_for_gets_it_failed(
    lab: Lab,
) -> None:
    """A watcher-era server ignores `capacity_available: 0`: a device that learned otherwise
    (it ran automations there before) and is handed a run anyway fails it, unrun."""

    async def go() -> None:
        first = lab.state.queue_run(lab.watcher("Digest [[cost=2]]", name="First"))
        async with lab.agent(LimitSettings(daily_usd=1.0)) as agent:
            await wait_for_async(done(lab.state, first), what="the first run")
            await wait_for_async(lambda: agent.limit.reached is not None, what="the limit")
            agent._honours_capacity = True  # as if this server had handed it automation runs
            unasked = lab.state.queue_run(lab.watcher("Digest", name="Second"))
            await wait_for_async(done(lab.state, unasked), what="the unasked run to be failed")
            assert agent._honours_capacity is False  # and no more polls until the day turns
        run = lab.state.run(unasked)
        assert run.status == "failed"
        assert run.error is not None
        assert "daily limit reached ($2.00 of $1.00)" in run.error
        assert len(lab.executions()) == 1  # never started
        assert lab.polls[-1]["capacity_available"] == 0

    asyncio.run(go())


# ------------------------------------------------------------- automation lane


def test_automation_lane_at_the_limit_offers_no_capacity_until_the_owner_says_go_on(
    auto_lab: Lab,
) -> None:
    lab = auto_lab

    async def go() -> None:
        automation = lab.automation("Summarise the inbox [[cost=0.02]]")
        first = lab.state.queue_automation_run(automation)
        async with lab.agent(LimitSettings(daily_runs=1)) as agent:
            await wait_for_async(done(lab.state, first), what="the first run")
            await wait_for_async(
                lambda: agent.status.state == "limit_reached", what="the limit to be reached"
            )
            second = lab.state.queue_automation_run(automation)
            before = len(lab.polls)
            await no_claim_while_the_loop_goes_round(agent, lab.state, second)
            await wait_for_async(lambda: len(lab.polls) > before + 1, what="polls at the limit")
            closed = lab.polls[before:]
            assert all(b["agent_kinds"] == [] for b in closed)
            assert all(b["capacity_available"] == 0 and b["wait_seconds"] == 0 for b in closed)
            assert lab.state.run(second).status == "pending"  # the server hands it to no one
            control = socket_path(lab.home / "state")  # as `status` and `resume` reach it
            status = await asyncio.to_thread(request, control, "status", 5.0)
            assert status["limit"]["reached"].startswith("daily limit reached (1 of 1 runs)")
            answer = await asyncio.to_thread(request, control, "resume_past_limit", 5.0)
            assert answer["past_limit"] is True
            await wait_for_async(done(lab.state, second), what="the run, past the limit")
            assert lab.state.run(second).status == "completed"
        assert lab.polls[0]["agent_kinds"] == ["claude-code"]  # before the limit

    asyncio.run(go())


def test_automation_lane_resumes_after_the_day_turns(auto_lab: Lab) -> None:
    lab = auto_lab

    async def go() -> None:
        automation = lab.automation("Summarise [[cost=0.7]]")
        first = lab.state.queue_automation_run(automation)
        async with lab.agent(LimitSettings(daily_usd=0.5)) as agent:
            await wait_for_async(done(lab.state, first), what="the first run")
            await wait_for_async(lambda: agent.limit.reached is not None, what="the limit")
            second = lab.state.queue_automation_run(automation)
            await no_claim_while_the_loop_goes_round(agent, lab.state, second)
            lab.wall.to_next_day()
            await wait_for_async(done(lab.state, second), what="the run, on the next day")
            # The new day counts its own run alone (once its CLI has ended).
            await wait_for_async(lambda: agent.limit.totals().cost_usd > 0, what="its cost")
            assert agent.limit.totals().cost_usd == pytest.approx(0.7)
            assert agent.limit.totals().runs == 1

    asyncio.run(go())
