"""What the next agent does about a killed agent's leftovers: orphaned CLIs and token files."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from device_agent.executor import Executor
from device_agent.leftovers import OUTSIDE_NOTE, RUN_MARKER
from device_agent.settings import ExecutorSettings
from tests.helpers import alive


def test_recover_stops_orphans_and_deletes_token_files(tmp_path: Path) -> None:
    scratch = tmp_path / "runs"
    (scratch / "device-agent-7-abc").mkdir(parents=True)
    (scratch / "device-agent-7-abc" / "mcp.json").write_text('{"Authorization": "Bearer x"}')
    outside = tmp_path / "my-workdir" / ".gemini" / "settings.json"
    outside.parent.mkdir(parents=True)
    outside.write_text("token inside")
    (scratch / f"{OUTSIDE_NOTE}7-123").write_text(str(outside))
    env = {**os.environ, RUN_MARKER: f"{scratch}{os.sep}7"}
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], env=env, start_new_session=True
    )
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
    )
    try:
        executor = Executor(ExecutorSettings(kill_grace_seconds=0.5), {}, scratch_dir=scratch)
        assert asyncio.run(executor.recover()) == 1
        orphan.wait(timeout=10)
        assert not alive(orphan.pid)
        assert alive(bystander.pid)  # no marker, not ours: untouched
        assert not outside.exists()
        assert list(scratch.iterdir()) == []
    finally:
        for process in (orphan, bystander):
            process.kill()
            process.wait()
