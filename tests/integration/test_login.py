"""login / logout with a file-backed test keyring: the token goes to the keyring, nowhere else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.lab import Lab

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def keyring_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PYTHON_KEYRING_BACKEND": "tests.integration.file_keyring.FileKeyring",
        "TEST_KEYRING_FILE": str(tmp_path / "keyring.json"),
        "PYTHONPATH": str(REPO),
        "DEVICE_AGENT_TOKEN": "",
    }


def agent(
    lab: Lab, env: dict[str, str], *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    lab.write_config()
    return subprocess.run(
        [sys.executable, "-m", "device_agent", *args],
        input=stdin,
        env=lab.env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_login_stores_the_token_in_the_keyring_and_run_uses_it(
    lab: Lab, keyring_env: dict[str, str]
) -> None:
    result = agent(lab, keyring_env, "login", "--token-stdin", stdin=lab.token + "\n")
    assert result.returncode == 0, result.stderr
    stored = json.loads(Path(keyring_env["TEST_KEYRING_FILE"]).read_text())
    assert stored == {f"device-agent|{lab.url}": lab.token}
    run_id = lab.state.queue_run(lab.add_watcher("Use the keyring token"))
    result = agent(lab, keyring_env, "run", "--once")
    assert result.returncode == 0, result.stderr
    assert lab.state.run(run_id).status == "completed"
    files = [p for p in lab.home.rglob("*") if p.is_file()]
    assert not [p for p in files if lab.token.encode() in p.read_bytes()]  # only in the keyring


def test_login_refuses_a_token_the_server_rejects(lab: Lab, keyring_env: dict[str, str]) -> None:
    result = agent(lab, keyring_env, "login", "--token-stdin", stdin="owl_pat_" + "n" * 32)
    assert result.returncode == 3
    assert "nothing was stored" in result.stderr
    assert not Path(keyring_env["TEST_KEYRING_FILE"]).exists()


def test_logout_removes_the_token(lab: Lab, keyring_env: dict[str, str]) -> None:
    assert agent(lab, keyring_env, "login", "--token-stdin", stdin=lab.token).returncode == 0
    result = agent(lab, keyring_env, "logout")
    assert result.returncode == 0
    assert "removed" in result.stdout
    result = agent(lab, keyring_env, "run", "--once")
    assert result.returncode == 3
    assert "device-agent login" in result.stderr
