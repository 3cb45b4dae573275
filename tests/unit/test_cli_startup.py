"""The command line's start: `--version`, one parser per command, the profiles read once,
and what `status` loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from device_agent import __version__
from device_agent.agent.journal import DEAD, Journal
from device_agent.agent.result import ExitReason, Report
from device_agent.cli.main import _parser, main
from device_agent.config import load
from device_agent.identity.credentials import store_token
from tests.support.agent import agent_env

# `device-agent run --once`, stopped where it would send its first poll: prints how many times
# the executor profiles were read by then.
RUN_TO_THE_FIRST_POLL = """
import os
import device_agent.executors.profiles
from device_agent.server.client import LobuClient

reads = []
read_profiles = device_agent.executors.profiles.load_profiles

def counted(*args, **kwargs):
    reads.append(args)
    return read_profiles(*args, **kwargs)

async def first_poll(self, body):
    print("#", len(reads), flush=True)
    os._exit(0)

device_agent.executors.profiles.load_profiles = counted
LobuClient.poll = first_poll
from device_agent.cli.main import main
main(["run", "--once", "--agent", "demo"])
"""


def test_version_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"device-agent {__version__}\n"


def test_run_reads_the_executor_profiles_once(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("agent-home")
    env = agent_env(
        home, server="http://127.0.0.1:9", token="owl_pat_" + "x" * 24, worker_id="linux:probe"
    )
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"  # never the user's keychain
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        env.pop(name, None)  # a proxy is httpx's to honour: the check is for the direct way
    done = subprocess.run(
        [sys.executable, "-c", RUN_TO_THE_FIRST_POLL],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    marked = [line for line in done.stdout.splitlines() if line.startswith("# ")]
    assert marked, f"`run` never reached its first poll: {done.stderr}"
    assert marked[-1] == "# 1"


@pytest.mark.parametrize(
    "argv",
    [
        ["trigger", "42", "--lane", "automation"],
        ["run", "--once", "--agent", "codex", "--concurrency", "2"],
        ["history", "--run", "7", "--json"],
        ["logs", "-f", "-n", "5"],
    ],
)
def test_a_command_parses_the_same_alone_as_in_the_whole_parser(argv: list[str]) -> None:
    alone, whole = _parser(only=argv[0]).parse_args(argv), _parser().parse_args(argv)
    assert vars(alone).keys() == vars(whole).keys()
    for key, value in vars(whole).items():
        assert getattr(alone, key) == value, key


# What `status` has no use for when no agent runs: the event loop (and the TLS it brings),
# the logging stack, the HTTP client, the keyring.
NOT_FOR_STATUS = frozenset({"asyncio", "structlog", "ssl", "httpx", "keyring"})


def test_status_with_no_agent_running_loads_no_event_loop_logging_http_or_keyring(
    isolated_home: Path,
) -> None:
    server = "http://127.0.0.1:9"
    settings = load(env={"DEVICE_AGENT_HOME": str(isolated_home)}, overrides={"server": server})
    store_token(server, "owl_pat_" + "s" * 24, state_dir=settings.paths.state_dir)  # logged in
    journal = Journal(settings.paths.journal_file)  # one result waiting, one refused
    for run_id in (1, 2):
        journal.record_claim(
            server,
            run_id,
            run_type="watcher",
            watcher_id="7",
            watcher_name="digest",
            agent_kind="demo",
            payload_digest="d",
        )
        journal.record_result(server, run_id, Report("out", None, 5, 0, None, ExitReason.OK))
    journal.settle(server, 2, state=DEAD, answer="rejected", message="HTTP 404 Run not found")
    journal.close()
    env = {**os.environ, "DEVICE_AGENT_SERVER": server}  # no DEVICE_AGENT_TOKEN: the login's

    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "device_agent", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    said = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert done.returncode == 0, said
    assert "agent: not running" in done.stdout
    assert "results waiting to be delivered: 1" in done.stdout  # it read the journal
    assert "REFUSED by the server: run 2" in done.stdout
    assert f"token:      file {settings.paths.state_dir}" in done.stdout  # what login recorded
    loaded = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert not loaded & NOT_FOR_STATUS, f"status loaded {sorted(loaded & NOT_FOR_STATUS)}"
