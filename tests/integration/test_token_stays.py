"""Issue 8, point 9: the device token never reaches a CLI — not its environment, not its
argv, not a file in its workdir — with the Lobu tools (MCP) on, for every CLI profile.

Each profile's fake reports its argv, its whole environment and every file under
its working directory while it runs; the agent runs as a user runs it, with a
configured workdir (a user's repository, where a written token would be committed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from device_agent.devserver import DevServer, DevState
from tests.support.agent import agent_env, install_fake

WORKER = "linux:token-test"

# profile name -> fake CLI, and what shows that the Lobu tools were wired in.
PROFILES = {
    "claude-code": "claude",
    "codex": "codex",
    "gemini": "gemini",
    "opencode": "opencode",
    "pi": "pi",
    "agy": "agy",
}


@dataclass
class Setup:
    state: DevState
    url: str
    token: str
    home: Path
    bin_dir: Path
    workdir: Path
    report: Path

    def run_once(self, kind: str) -> dict[str, Any]:
        watcher = self.state.add_watcher("Hello", agent_kind=kind, pinned_worker_id=WORKER)
        run_id = self.state.queue_run(watcher)
        env = agent_env(self.home, server=self.url, token=self.token, worker_id=WORKER)
        env.update(
            PATH=f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}", FAKE_REPORT=str(self.report)
        )
        done = subprocess.run(
            [sys.executable, "-m", "device_agent", "run", "--once"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert self.state.run(run_id).status == "completed", done.stderr
        facts: dict[str, Any] = json.loads(self.report.read_text())
        return facts


@pytest.fixture
def setup(tmp_path: Path, isolated_home: Path) -> Iterator[Setup]:
    state = DevState(create_checkin_watcher=False)
    token = state.add_token()
    bin_dir = tmp_path / "bin"
    for fake in PROFILES.values():
        install_fake(bin_dir, fake)
    workdir = tmp_path / "repo"
    (workdir / ".git").mkdir(parents=True)
    config = isolated_home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f"[executor]\nworkdir = {json.dumps(str(workdir))}\nmcp = true\n")
    with DevServer(state).running_in_thread() as server:
        yield Setup(state, server.url, token, isolated_home, bin_dir, workdir, tmp_path / "r.json")


@pytest.mark.parametrize("kind", list(PROFILES))
def test_no_trace_of_the_device_token_in_a_cli_environment_argv_or_workdir(
    setup: Setup, kind: str
) -> None:
    facts = setup.run_once(kind)
    assert setup.token not in json.dumps(facts["argv"])
    leaked = [name for name, value in facts["env"].items() if setup.token in value]
    assert leaked == []
    assert facts["cwd"] == str(setup.workdir)
    written = [path for path, text in facts["cwd_files"].items() if setup.token in text]
    assert written == []
    for path in setup.workdir.rglob("*"):  # nothing left behind either
        assert not path.is_file() or setup.token not in path.read_text(errors="replace")


def test_the_cli_gets_the_run_scoped_proxy_secret_instead(setup: Setup) -> None:
    # The test above would pass if MCP were simply off: show what the CLIs get instead.
    codex = setup.run_once("codex")
    secret = codex["env"]["LOBU_MCP_TOKEN"]
    assert secret.startswith("dap_run_")
    assert 'mcp_servers.lobu.url="http://127.0.0.1:' in " ".join(codex["argv"])
    opencode = setup.run_once("opencode")
    wired = json.loads(opencode["env"]["OPENCODE_CONFIG_CONTENT"])["mcp"]["lobu"]
    assert wired["url"].startswith("http://127.0.0.1:")
    assert wired["headers"]["Authorization"].startswith("Bearer dap_run_")
    assert wired["headers"]["Authorization"] != f"Bearer {secret}"  # one secret per run
    gemini = setup.run_once("gemini")
    assert gemini["settings"]["content"]["mcpServers"]["lobu"]["httpUrl"].startswith(
        "http://127.0.0.1:"
    )
    assert not Path(gemini["settings"]["path"]).is_relative_to(setup.workdir)
