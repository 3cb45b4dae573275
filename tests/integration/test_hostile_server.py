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
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from device_agent.identity.store import CHILD, DAY, Credential, TokenStore
from tests.support.agent import agent_env, write_config
from tests.support.claims import DELETE, watcher_answer
from tests.support.servers import (
    HostileServer,
    Reply,
    Seen,
    json_reply,
    nested_json,
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


def test_a_stop_ends_a_trickled_poll_within_the_shutdown_grace(
    serve: Serve, isolated_home: Path
) -> None:
    # One byte a second: httpx's per-read timeout never fires, and only the overall
    # deadline (minutes for a poll) would end it. SIGTERM waits for the poll no longer than
    # the shutdown grace, which a poll in flight gets to bring a run it may claim.
    write_config(isolated_home, "shutdown_grace_seconds = 1\n")
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


# ------------------------------------------- issue 21, point 6: a trickled token rotation

OLD_TOKEN = "owl_pat_" + "o" * 32
MINT_ANSWER = (
    json.dumps(
        {
            "worker_id": WORKER,
            "access_token": "owl_pat_" + "n" * 32,
            "expires_at": "2030-01-01T00:00:00Z",
        }
    ).encode()
    + b" " * 100_000  # at one byte per 0.3 s: hours
)


def start_with_a_token_due_for_rotation(home: Path, url: str) -> subprocess.Popen[str]:
    """`device-agent run` with the stored child token a login leaves, one day from expiry:
    the agent re-mints it before its first poll."""
    TokenStore(home / "state", url).save(
        Credential(
            token=OLD_TOKEN,
            kind=CHILD,
            worker_id=WORKER,
            platform="headless",
            expires_at=time.time() + DAY,
        )
    )
    env = env_for(home, url)
    del env["DEVICE_AGENT_TOKEN"]  # the stored token, not one from the environment
    return subprocess.Popen(
        [sys.executable, "-m", "device_agent", "run", "--agent", "demo"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def paths_seen(server: HostileServer) -> list[str]:
    return [seen.path for seen in server.seen]


def test_run_gives_up_a_trickled_rotation_at_its_deadline_and_polls(
    serve: Serve, isolated_home: Path
) -> None:
    write_config(isolated_home, "account_timeout_seconds = 1\n")
    server = serve([trickle(MINT_ANSWER, interval=0.3), IDLE])
    agent = start_with_a_token_due_for_rotation(isolated_home, server.url)
    try:
        wait_for(
            lambda: "/api/workers/poll" in paths_seen(server), timeout=60, what="the first poll"
        )
        assert paths_seen(server)[0] == "/api/me/devices/mint-child-token"
        assert server.seen[1].headers["authorization"] == f"Bearer {OLD_TOKEN}"  # still valid
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=60) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


def test_a_stop_ends_run_while_its_token_rotation_trickles(
    serve: Serve, isolated_home: Path
) -> None:
    # The longest account timeout allowed: only the stop can end the rotation in time.
    write_config(isolated_home, "account_timeout_seconds = 300\n")
    server = serve([trickle(MINT_ANSWER, interval=0.3)])
    agent = start_with_a_token_due_for_rotation(isolated_home, server.url)
    try:
        wait_for(lambda: server.seen, timeout=60, what="the mint request")
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0
        assert "/api/workers/poll" not in paths_seen(server)
        kept = TokenStore(isolated_home / "state", server.url).load()
        assert kept is not None
        assert kept.token == OLD_TOKEN
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
