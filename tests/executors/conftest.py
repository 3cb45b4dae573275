"""A bench for executor tests: fake CLIs on a PATH the test controls, a private HOME,
user profiles in a temp config dir, and helpers to run and to wait on conditions."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from device_agent.agent.result import Report
from device_agent.config import ExecutorSettings
from device_agent.executors.executor import Executor
from device_agent.executors.profiles import Profile, load_profiles
from device_agent.executors.request import ExecutionRequest, McpWiring
from tests.support.agent import install_fake

TOKEN = "owl_pat_Zq3xTokenThatMustNeverLeakAnywhere1"
MCP_URL = "http://127.0.0.1:8787/mcp"
PROMPT = "Summarize what changed.\n\n---\n\nWatcher: Daily digest\n"


@dataclass
class Bench:
    root: Path
    bin: Path = field(init=False)
    home: Path = field(init=False)
    user_profiles: Path = field(init=False)
    report_path: Path = field(init=False)
    environ: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.bin = self.root / "bin"
        self.home = self.root / "home"
        self.user_profiles = self.root / "config" / "executors"
        self.report_path = self.root / "report.json"
        for directory in (self.bin, self.home, self.user_profiles):
            directory.mkdir(parents=True)
        self.environ = {
            "PATH": f"{self.bin}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "FAKE_REPORT": str(self.report_path),
        }

    def install(self, fake: str, name: str | None = None, directory: Path | None = None) -> Path:
        """Put fakes/<fake>.py on PATH as an executable called `name`, run by this Python."""
        return install_fake(directory or self.bin, fake, name)

    def profile(self, name: str, text: str) -> Path:
        path = self.user_profiles / f"{name}.toml"
        path.write_text(text, encoding="utf-8")
        return path

    def profiles(self) -> dict[str, Profile]:
        return load_profiles(user_dir=self.user_profiles)

    def executor(self, secrets: tuple[str, ...] = (TOKEN,), **settings: Any) -> Executor:
        settings.setdefault("kill_grace_seconds", 0.3)
        return Executor(
            ExecutorSettings(**settings), self.profiles(), secrets=secrets, environ=self.environ
        )

    def request(
        self,
        kind: str,
        *,
        config: Mapping[str, Any] | None = None,
        prompt: str = PROMPT,
        mcp: bool = True,
    ) -> ExecutionRequest:
        return ExecutionRequest(
            run_id=42,
            agent_kind=kind,
            prompt=prompt,
            execution_config=dict(config or {}),
            mcp=McpWiring(url=MCP_URL, token=TOKEN) if mcp else None,
        )

    def run(
        self,
        kind: str,
        *,
        executor: Executor | None = None,
        mode: str | None = None,
        **request: Any,
    ) -> Report:
        if mode is not None:
            self.environ["FAKE_MODE"] = mode
        executor = executor or self.executor()
        return asyncio.run(executor.execute(self.request(kind, **request), cancel=asyncio.Event()))

    def reported(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.report_path.read_text(encoding="utf-8"))
        return result


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return Bench(tmp_path)
