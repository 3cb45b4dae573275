"""Replay what a real Lobu 1.6.0 server answered against the dev server.

`lobu-1.6.0-watcher-lane.json` (with its README.md, both copied verbatim from
the recording) is the ground truth: every step must match, except the ones in
`DELIBERATE`, each with its reason. When a real server is recorded again,
replace the recording; do not bend this test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from device_agent.devserver import DevServer, DevState, Fault
from tests.support.waiting import wait_for

RECORDING: Final = json.loads(
    (Path(__file__).parent / "lobu-1.6.0-watcher-lane.json").read_text(encoding="utf-8")
)
# Where the dev server is deliberately unlike the real one, by step id.
DELIBERATE: Final = {
    "48": "a request without Authorization gets 401: the real local server trusts it as an"
    " anonymous worker that may touch any run (DevState(allow_anonymous=True) does that too)",
}
DEFAULT_KEYS: Final = (
    "error",
    "error_description",
    "status",
    "ok",
    "continue",
    "next_poll_seconds",
    "already_queued",
    "run_type",
)
NOW: Final = datetime(2026, 11, 30, 8, 12, 25, tzinfo=UTC)
WINDOW_WEEKS_BACK: Final = {
    "this_week": 0,
    "last_week": 1,
    "two_weeks_ago": 2,
    "three_weeks_ago": 3,
    "four_weeks_ago": 4,
    "five_weeks_ago": 5,
}
ABANDONED_POLL_STEP: Final = "X36"


@dataclass
class Replay:
    """One replay of the recorded sequence against a fresh dev server."""

    state: DevState
    server: DevServer
    http: httpx.Client  # one client for the whole replay: its answers do not depend on it
    tokens: dict[str | None, str | None]
    watchers: dict[str, str] = field(default_factory=dict)  # "A" -> our id
    last_run: int | None = None
    last_queued: int | None = None

    def setup(self, text: str) -> None:
        ids = RECORDING["worker_ids"]
        if text.startswith("create watchers"):
            for name, worker in (("A", ids["W"]), ("B", ids["W"]), ("C", ids["W2"])):
                self.watchers[name] = self.state.add_watcher(
                    "diff", name=f"diff {name}", pinned_worker_id=worker
                )
            return
        match = re.fullmatch(r"queue a manual run on watcher (\w), window: (\w+)", text)
        assert match, f"unknown setup step {text!r}"
        start = _midnight() - timedelta(weeks=WINDOW_WEEKS_BACK[match.group(2)])
        self.last_queued = self.state.queue_run(
            self.watchers[match.group(1)], "manual", start, start + timedelta(days=7)
        )

    def send(self, step: dict[str, Any]) -> httpx.Response:
        request = step["request"]
        if step["id"] == ABANDONED_POLL_STEP:
            self._abandon_a_poll(request)
        headers = dict(request["headers"])
        token = self.tokens[request["token"]]
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        body = request["body"]
        content: bytes | None = None
        if isinstance(body, str):
            content = body.encode()
            headers["Content-Type"] = "application/json"
        elif body is not None:
            content = json.dumps(self._map_body(_expand(body))).encode()
            headers["Content-Type"] = "application/json"
        answer = self.http.request(
            request["method"], self._map_path(request["path"]), content=content, headers=headers
        )
        if answer.status_code == 200 and isinstance(answer.json(), dict):
            self.last_run = answer.json().get("run_id", self.last_run)
        return answer

    def _abandon_a_poll(self, request: dict[str, Any]) -> None:
        """A poll whose client gives up while the server holds it, as the step's note says."""
        self.state.faults.add(Fault(route="poll", kind="delay", seconds=1.0))
        queued = self.last_queued
        assert queued is not None
        client = httpx.Client(base_url=self.server.url, timeout=0.3)
        with client as http, pytest.raises(httpx.ReadTimeout):
            http.post(
                request["path"],
                json=request["body"],
                headers={"Authorization": f"Bearer {self.tokens['B']}"},
            )
        wait_for(lambda: self.state.run(queued).status == "running", what="the abandoned claim")
        self.last_run = queued

    def _map_path(self, path: str) -> str:
        def run(match: re.Match[str]) -> str:
            return f"/runs/{self._map_run_id(int(match.group(1)))}/"

        def watcher(match: re.Match[str]) -> str:
            name = {"1": "A", "2": "B", "3": "C"}.get(match.group(1))
            return f"/watchers/{self.watchers[name] if name else match.group(1)}/"

        path = re.sub(r"/runs/(\d+)/", run, path)
        return re.sub(r"/watchers/(\d+)/", watcher, path)

    def _map_body(self, body: Any) -> Any:
        if isinstance(body, dict) and isinstance(body.get("run_id"), int):
            return body | {"run_id": self._map_run_id(body["run_id"])}
        return body

    def _map_run_id(self, recorded: int) -> int:
        # The recording's own run ids (1..11) stand for "the run claimed last";
        # 0, 999999 and the like stand for themselves.
        if 1 <= recorded <= 100 and self.last_run is not None:
            return self.last_run
        return recorded


def _midnight() -> datetime:
    return NOW.replace(hour=0, minute=0, second=0, microsecond=0)


def _expand(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"_repeat", "_length"}:
        return value["_repeat"] * value["_length"]
    if isinstance(value, dict):
        return {key: _expand(item) for key, item in value.items()}
    return value


def difference(step: dict[str, Any], answer: httpx.Response) -> str | None:
    """How the dev server's answer differs from the real one, by the README's rules."""
    real = step["real"]
    if answer.status_code != real["status"]:
        return f"status {answer.status_code} != {real['status']} ({answer.text[:200]})"
    got = answer.json()
    if real["compare"] == "claim":
        shape, want = _shape(got), RECORDING["claimed_run_shape"]
        return None if shape == want else f"claim shape {shape} != {want}"
    expected = real["body"]
    if set(got) != set(expected):
        return f"keys {sorted(got)} != {sorted(expected)}"
    for key in DEFAULT_KEYS:
        if key in got and key in expected and got[key] != expected[key]:
            return f"{key}: {got[key]!r} != {expected[key]!r}"
    return None


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    names = {bool: "boolean", int: "number", float: "number", str: "string", type(None): "null"}
    return names.get(type(value), type(value).__name__)


@pytest.fixture
def replay(request: pytest.FixtureRequest) -> Iterator[Replay]:
    state = DevState(allow_anonymous=request.param, clock=NOW.timestamp)
    ids = RECORDING["worker_ids"]
    scopes = RECORDING["token_scopes"]
    tokens: dict[str | None, str | None] = {
        "B": state.add_token(scopes, bound_worker_id=ids["W"]),
        "U": state.add_token(scopes),
        "N": state.add_token(scopes, bound_worker_id=ids["never_polls"]),
        "bad": "owl_pat_" + "A" * 32,
        "garbage": "not-a-token",
        None: None,
    }
    with (
        DevServer(state).running_in_thread() as server,
        httpx.Client(base_url=server.url, timeout=30.0) as http,
    ):
        yield Replay(state=state, server=server, http=http, tokens=tokens)


def run_sequence(replay: Replay) -> dict[str, str]:
    """Replay every step; the differences by step id."""
    differences = {}
    for step in RECORDING["sequence"]:
        if "setup" in step:
            replay.setup(step["setup"])
            continue
        found = difference(step, replay.send(step))
        if found is not None:
            differences[step["id"]] = found
    return differences


@pytest.mark.parametrize("replay", [False], indirect=True, ids=["dev-server-defaults"])
def test_the_dev_server_answers_every_recorded_step_like_lobu_1_6_0(replay: Replay) -> None:
    differences = run_sequence(replay)
    unexplained = {k: v for k, v in differences.items() if k not in DELIBERATE}
    assert unexplained == {}
    # A deliberate difference that no longer shows is a stale entry: drop it.
    assert set(differences) == set(DELIBERATE)


@pytest.mark.parametrize("replay", [True], indirect=True, ids=["anonymous-allowed"])
def test_with_anonymous_workers_allowed_every_step_matches(replay: Replay) -> None:
    assert run_sequence(replay) == {}


def test_the_recording_is_the_one_the_readme_describes() -> None:
    steps = [s for s in RECORDING["sequence"] if "id" in s]
    assert RECORDING["server"].startswith("Lobu @lobu/server 1.6.0")
    assert len([s for s in steps if not s["id"].startswith("X")]) == 50
    assert {s["real"]["compare"] for s in steps} <= {"default", "claim", "timing"}
