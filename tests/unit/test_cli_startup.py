"""The command line's start: `--version`, one parser per command, the profiles read once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from device_agent import __version__
from device_agent.cli.main import _parser, main
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
