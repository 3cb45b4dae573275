"""The fake Codex and Gemini CLIs keep the rules the real ones follow for MCP (issue 26):
`codex exec` refuses an MCP tool call nobody approved, and Gemini CLI skips a system
settings file root does not own. An automation run through each completes its window
through the run's MCP session only when the profile's wiring satisfies those rules;
with the wiring that broke the real CLIs it fails with `missing_complete_window`, as
tests/realcli showed they did.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from device_agent.agent.app import run_agent
from device_agent.config import Paths, Settings, validate
from device_agent.devserver import DevServer, DevState
from device_agent.errors import ExitCode
from tests.support.agent import install_fake

WORKER = "headless:cli-rules"


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    for fake in ("codex", "gemini"):
        install_fake(bin_dir, fake)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no user settings of the machine's
    monkeypatch.setenv("FAKE_REPORT", str(tmp_path / "seen.json"))
    return bin_dir


def run_once(state: DevState, token: str, home: Path) -> None:
    async def go() -> None:
        async with DevServer(state) as server:
            settings = validate(
                Settings(
                    server=server.url,
                    token=token,
                    worker_id=WORKER,
                    heartbeat_seconds=0.5,
                    max_backoff_seconds=0.5,
                    paths=Paths.resolve({"DEVICE_AGENT_HOME": str(home)}),
                )
            )
            code = await run_agent(
                settings, token=token, worker_id=WORKER, once=True, handle_signals=False
            )
            assert code == ExitCode.OK

    asyncio.run(go())


@pytest.mark.parametrize("kind", ["codex", "gemini"])
def test_an_automation_run_through_the_cli_completes_its_window_over_mcp(
    fakes: Path, isolated_home: Path, kind: str
) -> None:
    state = DevState(create_checkin_watcher=False, lane="automation", next_poll_seconds=0.2)
    token = state.add_token()
    automation = state.add_automation("Summarise", agent_kind=kind, pinned_worker_id=WORKER)
    run_id = state.queue_automation_run(automation)
    run_once(state, token, isolated_home)
    run = state.run(run_id)
    assert (run.status, run.reason_code) == ("completed", None)
    completed = [c for c in state.mcp_calls if c.tool == "run_sdk"]
    assert len(completed) == 1
    assert completed[0].token == run.session_token  # the run's own, never the device's
    assert completed[0].token != token
