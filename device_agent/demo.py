"""`device-agent demo`: the whole product on one machine, offline, in a few seconds.

It starts the dev server on a free loopback port, pins a few watchers with
realistic prompts to this device, runs the real agent against it with the
bundled offline demo executor until every run is done, and prints what
happened. Its files live in their own folder, apart from a real install's.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from device_agent import logs
from device_agent.cli import format_table
from device_agent.devserver import DevServer, DevState
from device_agent.dispatcher import Agent, ExitCode
from device_agent.journal import Journal
from device_agent.runner import run_agent
from device_agent.settings import Paths, Settings, validate

DEMO_WORKER_ID: Final = "demo:this-device"
DEMO_DEADLINE_SECONDS: Final = 60.0

DEMO_WATCHERS: Final[Sequence[tuple[str, str, str]]] = (
    (
        "Morning inbox digest",
        "scheduled",
        "Read the unread messages in my inbox from the window below and give me a five-line "
        "digest: who needs an answer from me today, and what can wait.",
    ),
    (
        "Release notes watch",
        "scheduled",
        "Check the release notes of the libraries this project depends on for anything "
        "published in the window below that breaks our build or fixes a security issue.",
    ),
    (
        "Flaky test triage",
        "manual",
        "Look at the CI failures in the window below, group them by test, and tell me which "
        "ones look flaky (passed on retry) and which look like real regressions.",
    ),
)


def run_demo(home: Path | None = None) -> int:
    paths = _demo_paths(home)
    return asyncio.run(_demo(paths))


def _demo_paths(home: Path | None) -> Paths:
    base = home or Paths.resolve(os.environ).state_dir / "demo"
    shutil.rmtree(base, ignore_errors=True)  # every demo starts clean
    paths = Paths(base / "config", base / "state", base / "logs")
    paths.ensure()
    return paths


async def _demo(paths: Paths) -> int:
    state = DevState(create_checkin_watcher=False)
    token = state.add_token()
    logs.setup(log_file=paths.log_file, console_level=30, secrets=(token,))
    run_ids = []
    for name, source, prompt in DEMO_WATCHERS:
        watcher_id = state.add_watcher(
            prompt=prompt, name=name, agent_kind="demo", pinned_worker_id=DEMO_WORKER_ID
        )
        run_ids.append(state.queue_run(watcher_id, dispatch_source=source))
    async with DevServer(state) as server:
        print(f"dev server: {server.url} (loopback only; a temporary token was minted for it)")
        print(f"queued {len(run_ids)} watcher runs pinned to {DEMO_WORKER_ID}; running them...\n")
        settings = validate(
            Settings(
                server=server.url,
                token=token,
                worker_id=DEMO_WORKER_ID,
                default_agent="demo",
                concurrency=2,
                paths=paths,
            )
        )
        started = time.monotonic()
        code = await _run_until_done(settings, token, state, run_ids)
        elapsed = time.monotonic() - started
    _print_summary(state, run_ids, paths, elapsed)
    if code != ExitCode.OK:
        return int(code)
    done = all(state.run(r).status == "completed" for r in run_ids)
    return ExitCode.OK if done else ExitCode.INTERNAL


async def _run_until_done(
    settings: Settings, token: str, state: DevState, run_ids: list[int]
) -> int:
    holder: list[Agent] = []
    agent_task = asyncio.create_task(
        run_agent(
            settings,
            token=token,
            worker_id=DEMO_WORKER_ID,
            handle_signals=False,
            started=holder.append,
        )
    )
    deadline = time.monotonic() + DEMO_DEADLINE_SECONDS
    while time.monotonic() < deadline and not agent_task.done():
        journal_done = _all_settled(settings, run_ids)
        if journal_done and all(state.run(r).status not in ("pending", "running") for r in run_ids):
            break
        await asyncio.sleep(0.1)
    if holder:
        holder[0].request_stop()
    return int(await agent_task)


def _all_settled(settings: Settings, run_ids: list[int]) -> bool:
    if not settings.paths.journal_file.exists():
        return False
    journal = Journal(settings.paths.journal_file)
    try:
        entries = [journal.get(settings.origin, r) for r in run_ids]
    finally:
        journal.close()
    return all(e is not None and e.state == "acknowledged" for e in entries)


def _print_summary(state: DevState, run_ids: list[int], paths: Paths, elapsed: float) -> None:
    journal = Journal(paths.journal_file)
    try:
        entries = {e.run_id: e for e in journal.recent(100)}
    finally:
        journal.close()
    rows = []
    for run_id in run_ids:
        run = state.run(run_id)
        entry = entries.get(run_id)
        rows.append(
            [
                str(run_id),
                entry.watcher_name if entry and entry.watcher_name else "-",
                entry.agent_kind if entry and entry.agent_kind else "-",
                run.status,
                f"{(run.duration_ms or 0) / 1000:.2f}s",
            ]
        )
    print(format_table(["run", "watcher", "executor", "status", "duration"], rows))
    first = state.run(run_ids[0])
    if first.output:
        excerpt = first.output.strip().splitlines()[0][:100]
        print(f"\nrun {run_ids[0]} output: {excerpt}")
    print(f"\n{len(run_ids)} runs in {elapsed:.1f} s. Logs: {paths.log_file}")
    print(
        f"Journal: {paths.journal_file} (see: DEVICE_AGENT_HOME={paths.state_dir.parent} "
        "device-agent history)"
    )
