"""`device-agent demo`: the whole product on one machine, offline, in a second.

It starts the dev server on a free loopback port, pins a few watchers with
realistic prompts to this device, and runs the real agent against it with the
bundled offline demo executor: first the scheduled runs, then a "Run now"
through the same trigger route `device-agent trigger` uses. Then the same for
the automation lane of current servers: a dev server in automation mode, the
bundled automation demo agent finalizing its windows through the run's own MCP
session — one on the first round, one only after the server's nudge — and the
transcript of each run uploaded to the server once it is settled. Last, a
device chat: a person writes in a conversation pinned to this device, and the
bundled chat demo agent answers it. It prints what happened. Its files live
in their own folder, apart from a real install's.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from device_agent import logs
from device_agent.agent.app import run_agent
from device_agent.agent.journal import ACKNOWLEDGED, Entry
from device_agent.agent.poll_loop import PollLoop
from device_agent.cli.output import format_table
from device_agent.config import Paths, Settings, validate
from device_agent.devserver import DevServer, DevState
from device_agent.errors import ExitCode
from device_agent.lanes.watcher.lane import WATCHER
from device_agent.server.client import LobuClient

DEMO_WORKER_ID: Final = "demo:this-device"
DEADLINE_SECONDS: Final = 60.0

SCHEDULED: Final[Sequence[tuple[str, str]]] = (
    (
        "Morning inbox digest",
        "Read the unread messages in my inbox from the window below and give me a five-line "
        "digest: who needs an answer from me today, and what can wait.",
    ),
    (
        "Release notes watch",
        "Check the release notes of the libraries this project depends on for anything "
        "published in the window below that breaks our build or fixes a security issue.",
    ),
)
AUTOMATIONS: Final[Sequence[tuple[str, str]]] = (
    (
        "Weekly spend check",
        "Compare this week's cloud spend with last week's and flag any service that grew "
        "by more than 20 percent.",
    ),
    (
        "Open PR review",
        "Go through the open pull requests and list the ones waiting on me. (This demo "
        "automation needs a nudge: its first round forgets to complete the window.)",
    ),
)
AUTOMATION_AGENT: Final = "demo-automation"
CHAT_AGENT: Final = "demo-chat"
CHAT_MESSAGE: Final = "What did the weekly spend check find, and is anything urgent?"
RUN_NOW: Final = (
    "Flaky test triage",
    "Look at the CI failures in the window below, group them by test, and tell me which "
    "ones look flaky (passed on retry) and which look like real regressions.",
)


def run_demo(home: Path | None = None) -> int:
    return asyncio.run(_demo(_demo_paths(home)))


def _demo_paths(home: Path | None) -> Paths:
    base = home or Paths.resolve(os.environ).state_dir / "demo"
    shutil.rmtree(base, ignore_errors=True)  # every demo starts clean
    paths = Paths(base / "config", base / "state", base / "logs")
    paths.ensure()
    return paths


async def _demo(paths: Paths) -> int:
    state = DevState(create_checkin_watcher=False)
    token = state.add_token()
    device_token = state.add_token(bound_worker_id=DEMO_WORKER_ID)  # what "Run now" needs
    logs.setup(log_file=paths.log_file, console_level=30, secrets=(token, device_token))
    run_ids = [
        state.queue_run(_watcher(state, name, prompt), dispatch_source="scheduled")
        for name, prompt in SCHEDULED
    ]
    manual_watcher = _watcher(state, *RUN_NOW)
    started = time.monotonic()
    async with DevServer(state) as server:
        print(f"dev server on {server.url} (loopback only, temporary tokens)")
        print(f"{len(run_ids)} scheduled watcher runs are waiting for device {DEMO_WORKER_ID}\n")
        agents, agent_task = _start_agent(server.url, token, paths, default_agent="demo")
        finished = await _until_settled(agents, run_ids, agent_task)
        if finished:
            run_ids.append(await _run_now(server.url, device_token, manual_watcher))
            agents[0].poll_now()  # what `device-agent trigger` does to a running agent
            finished = await _until_settled(agents, run_ids, agent_task)
        state.release_held_polls()  # the agent's last poll is answered, not waited out
        if agents:
            agents[0].request_stop()
        code = await agent_task
    _print_summary(state, run_ids, paths, time.monotonic() - started)
    if code != ExitCode.OK:
        return int(code)
    done = finished and all(state.run(r).status == "completed" for r in run_ids)
    automations_done = await _automation_part(paths)
    chat_done = await _chat_part(paths)
    return ExitCode.OK if done and automations_done and chat_done else ExitCode.INTERNAL


async def _automation_part(paths: Paths) -> bool:
    """The automation lane: a current server's runs, finalized by the CLI through the run's own
    MCP session, one of them only after a resume round (docs/protocol.md, "Automation lane")."""
    state = DevState(create_checkin_watcher=False, lane="automation")
    token = state.add_token()
    run_ids = [
        state.queue_automation_run(
            state.add_automation(
                prompt,
                name=name,
                agent_kind=AUTOMATION_AGENT,
                pinned_worker_id=DEMO_WORKER_ID,
                max_attempts=1,
            )
        )
        for name, prompt in AUTOMATIONS
    ]
    started = time.monotonic()
    async with DevServer(state) as server:
        print(f"\nautomation lane: dev server on {server.url}, {len(run_ids)} automation runs\n")
        agents, agent_task = _start_agent(server.url, token, paths, default_agent=AUTOMATION_AGENT)
        finished = await _until_settled(agents, run_ids, agent_task)
        entries = await _entries(agents, run_ids)
        state.release_held_polls()  # the agent's last poll is answered, not waited out
        if agents:
            agents[0].request_stop()
        code = await agent_task
    _print_automations(state, run_ids, entries, time.monotonic() - started)
    print(
        "Each run's transcript (the prompts, the tool calls and their results, the answers) "
        "was uploaded\nafter its final report and stored by the server; the device keeps its "
        f"own copy:\n  DEVICE_AGENT_HOME={paths.state_dir.parent} device-agent history "
        f"--run {run_ids[-1]} --transcript"
    )
    return (
        code == ExitCode.OK
        and finished
        and all(state.run(r).status == "completed" for r in run_ids)
        and all(state.transcript(r) is not None for r in run_ids)
    )


async def _chat_part(paths: Paths) -> bool:
    """The chat lane: a person writes in a conversation pinned to this device; the device's
    agent answers it and the server posts the reply (docs/protocol.md, "Chat lane")."""
    state = DevState(create_checkin_watcher=False, lane="automation")
    token = state.add_token()
    conversation = state.add_conversation(DEMO_WORKER_ID, CHAT_AGENT, agent_name="Demo assistant")
    run_id = state.post_message(conversation, CHAT_MESSAGE)
    async with DevServer(state) as server:
        print(f"\nchat lane: dev server on {server.url}, a conversation pinned to this device\n")
        agents, agent_task = _start_agent(server.url, token, paths, default_agent=CHAT_AGENT)
        finished = await _until_settled(agents, [run_id], agent_task)
        state.release_held_polls()  # the agent's last poll is answered, not waited out
        if agents:
            agents[0].request_stop()
        code = await agent_task
    turn = state.run(run_id)
    print(_said("person", CHAT_MESSAGE))
    print(
        _said("device", state.conversation(conversation).history[-1]["content"])
        if turn.status == "completed"
        else _said("error", turn.error or turn.status)
    )
    print(f"\nchat turn {run_id}: {turn.status}; the reply is what the conversation shows.")
    return code == ExitCode.OK and finished and turn.status == "completed"


def _said(who: str, text: str) -> str:
    return textwrap.fill(
        " ".join(text.split()), width=96, initial_indent=f"{who:>8}: ", subsequent_indent=" " * 10
    )


async def _entries(agents: list[PollLoop], run_ids: list[int]) -> dict[int, Entry]:
    """The device's journal rows of these runs: how many rounds each took, what the CLI said."""
    if not agents:
        return {}
    journal = agents[0].journal
    found = {}
    for run_id in run_ids:
        entry = await journal.call(journal.sync.get, agents[0].server, run_id)
        if entry is not None:
            found[run_id] = entry
    return found


def _print_automations(
    state: DevState, run_ids: list[int], entries: dict[int, Entry], elapsed: float
) -> None:
    rows = []
    for run_id in run_ids:
        run = state.run(run_id)
        automation = state.find_automation(run.automation_id or 0)
        entry = entries.get(run_id)
        rows.append(
            [
                str(run_id),
                automation.name if automation else "?",
                str(entry.finalize_attempt + 1) if entry else "-",
                "yes" if run.windows_completed else "no",
                run.status,
                _stored(state, run_id),
                _excerpt((entry.output if entry else None) or run.error or "", width=44),
            ]
        )
    headers = ["run", "automation", "rounds", "window completed", "status", "transcript", "output"]
    print(format_table(headers, rows))
    print(f"\n{len(run_ids)} automation runs claimed, executed and reported in {elapsed:.1f} s.")


def _stored(state: DevState, run_id: int) -> str:
    """What the server stored of the run's transcript: its messages, and how it ended."""
    record = state.transcript(run_id)
    if record is None:
        return "not stored"
    messages = record.snapshot_jsonl.count("\n") - 1
    return f"stored: {messages} messages, {record.terminal_status}"


def _start_agent(
    url: str, token: str, paths: Paths, *, default_agent: str
) -> tuple[list[PollLoop], asyncio.Task[ExitCode]]:
    """The real agent against the demo's dev server; the list gets it once it has started."""
    settings = validate(
        Settings(
            server=url,
            token=token,
            worker_id=DEMO_WORKER_ID,
            default_agent=default_agent,
            concurrency=2,
            paths=paths,
        )
    )
    agents: list[PollLoop] = []
    task = asyncio.create_task(
        run_agent(
            settings,
            token=token,
            worker_id=DEMO_WORKER_ID,
            handle_signals=False,
            started=agents.append,
        )
    )
    return agents, task


def _watcher(state: DevState, name: str, prompt: str) -> str:
    return state.add_watcher(
        prompt=prompt, name=name, agent_kind="demo", pinned_worker_id=DEMO_WORKER_ID
    )


async def _run_now(url: str, device_token: str, watcher_id: str) -> int:
    async with LobuClient(url, lambda: device_token) as client:
        answer = await client.trigger(WATCHER.trigger_route(watcher_id))
    if not answer.ok or not isinstance(answer.body, dict):
        raise RuntimeError(f"the demo could not trigger watcher {watcher_id}: {answer.describe()}")
    run_id = int(answer.body["run_id"])
    print(f'"Run now" on watcher {watcher_id}: the server queued run {run_id}\n')
    return run_id


async def _until_settled(
    agents: list[PollLoop], run_ids: list[int], agent_task: asyncio.Task[ExitCode]
) -> bool:
    """Wait until the server has acknowledged every run's result (or the agent stopped)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline and not agent_task.done():
        if agents and await _acknowledged(agents[0], run_ids):
            return True
        await asyncio.sleep(0.05)
    return False


async def _acknowledged(agent: PollLoop, run_ids: list[int]) -> bool:
    """Asked of the running agent's own journal (its one writer thread), not a second handle."""
    journal = agent.journal
    for run_id in run_ids:
        entry = await journal.call(journal.sync.get, agent.server, run_id)
        if entry is None or entry.state != ACKNOWLEDGED:
            return False
    return True


def _print_summary(state: DevState, run_ids: list[int], paths: Paths, elapsed: float) -> None:
    rows = []
    for run_id in run_ids:
        run = state.run(run_id)
        watcher = state.watcher(str(run.approved_input["watcher_id"]))
        rows.append(
            [
                str(run_id),
                watcher.name,
                str(run.dispatch_source),
                "demo",
                run.status,
                f"{(run.duration_ms or 0) / 1000:.2f}s",
                _excerpt(run.output or run.error or ""),
            ]
        )
    print(
        format_table(["run", "watcher", "dispatch", "executor", "status", "took", "output"], rows)
    )
    print(f"\n{len(run_ids)} runs claimed, executed and reported in {elapsed:.1f} s.")
    print(f"Logs:    {paths.log_file}")
    print(f"Journal: DEVICE_AGENT_HOME={paths.state_dir.parent} device-agent history")


def _excerpt(text: str, width: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"
