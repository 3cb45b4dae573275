"""Issue 8: `device-agent run` against a hostile server, as a user runs it.

The agent must never crash, hang or drop a run whatever the server answers
(docs/protocol.md, "What a real server does").
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.agent import agent_env, daemon_status, write_config
from tests.support.claims import DELETE, watcher_answer
from tests.support.servers import (
    HostileServer,
    Reply,
    Seen,
    json_reply,
    nested_json,
    silent,
    trickle,
)
from tests.support.waiting import wait_for

WORKER = "linux:hostile"
TOKEN = "owl_pat_" + "t" * 32
IDLE = json_reply({"next_poll_seconds": 60})


def env_for(home: Path, url: str) -> dict[str, str]:
    return agent_env(home, server=url, token=TOKEN, worker_id=WORKER)


def start(home: Path, url: str) -> subprocess.Popen[str]:
    """`device-agent run` as a service manager starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "device_agent", "run", "--agent", "demo"],
        env=env_for(home, url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


Serve = Callable[[list[Reply]], HostileServer]


@pytest.fixture
def serve() -> Iterator[Serve]:
    with contextlib.ExitStack() as stack:
        yield lambda replies: stack.enter_context(HostileServer(replies).running_in_thread())


def run_once(home: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device_agent", "run", "--once", "--agent", "demo"],
        env=env_for(home, url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def completions(server: HostileServer) -> list[Seen]:
    return [seen for seen in server.seen if seen.path.endswith("/complete-watcher")]


def claim(run_id: int, *, name: str = "Inbox", agent_kind: str | None = None) -> Reply:
    """A watcher run for the demo agent (`--agent demo`) unless it names another kind."""
    changes = {"run_id": run_id, "watcher.name": name, "watcher.agent_kind": agent_kind}
    changes |= {"event.payload.agent_kind": DELETE, "watcher.execution_config": {}}
    return json_reply(watcher_answer(changes))


def test_a_deeply_nested_poll_answer_is_transient_not_an_internal_error(
    serve: Serve, isolated_home: Path
) -> None:
    server = serve([nested_json(100_000)])
    done = run_once(isolated_home, server.url)
    assert done.returncode != 1, done.stderr
    assert "internal error" not in done.stderr
    assert "undecodable" in done.stderr


@pytest.mark.parametrize(
    ("name", "agent_kind", "run_id"),
    [("bad\udc80name", None, 41), ("Inbox", "odd\udc80kind", 42), ("Inbox", None, 2**64 + 1)],
)
def test_a_run_sqlite_cannot_hold_as_sent_is_reported_failed_not_dropped(
    serve: Serve, isolated_home: Path, name: str, agent_kind: str | None, run_id: int
) -> None:
    server = serve([claim(run_id, name=name, agent_kind=agent_kind), json_reply({"ok": True})])
    run_once(isolated_home, server.url)
    sent = completions(server)
    assert sent, "the run was never reported"
    assert sent[0].path == f"/api/workers/me/runs/{run_id}/complete-watcher"
    body = json.loads(sent[0].body)
    if agent_kind is not None:  # no executor for this kind: said in storable text
        assert "odd\ufffdkind" in body["error"]
    if run_id > 2**63:
        assert "64 bits" in body["error"]


def test_a_stop_aborts_a_trickled_poll_at_once(serve: Serve, isolated_home: Path) -> None:
    # One byte a second: httpx's per-read timeout never fires, and only the overall
    # deadline (minutes for a poll) would end it. SIGTERM must not wait for that.
    server = serve([trickle(b'{"next_poll_seconds": 5}' + b" " * 100_000, interval=1.0)])
    agent = start(isolated_home, server.url)
    try:
        wait_for(lambda: server.seen, timeout=60, what="the agent's first poll")
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=60)
        assert agent.returncode == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate()


def test_a_timed_out_poll_shows_in_status_that_a_run_may_have_been_claimed(
    serve: Serve, isolated_home: Path
) -> None:
    # A poll not held for a run (wait_seconds = 0) times out after poll_timeout_seconds.
    config = "wait_seconds = 0\npoll_timeout_seconds = 1\nmax_backoff_seconds = 60\n"
    write_config(isolated_home, config)
    server = serve([silent()])
    agent = start(isolated_home, server.url)

    def detail() -> str:
        return str(daemon_status(isolated_home).get("detail") or "")

    try:
        wait_for(lambda: "may have been claimed" in detail(), timeout=30, what="status detail")
        shown = subprocess.run(
            [sys.executable, "-m", "device_agent", "status"],
            env=env_for(isolated_home, server.url),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "a run may have been claimed and not received" in shown.stdout
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=60)
