"""Start-up pays only for the command used: no heavy import before it is needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from device_agent.cli.main import _parser
from tests.support.agent import agent_env

HEAVY = (
    "httpx",
    "keyring",
    "asyncio",
    "logging",
    "device_agent.desktop.service",
    "device_agent.identity.commands",
)

# What `device-agent run` must not import before its first poll: what only some runs, some
# commands or later moments need.
NOT_BEFORE_THE_FIRST_POLL = (
    "device_agent.lanes.automation.lane",  # until an automation run arrives
    "device_agent.lanes.automation.payload",
    "device_agent.lanes.automation.prompt",
    "device_agent.lanes.automation.access",
    "device_agent.lanes.automation.answers",
    "device_agent.desktop.notify.policy",  # until a run has finished
    "device_agent.desktop.notify.notifier",
    "device_agent.identity.run_now",  # until someone asks for "Run now"
    "device_agent.desktop.service",  # at exit
    "device_agent.executors.launch",  # at the first run
    "device_agent.identity.commands",  # other commands'
    "device_agent.cli.doctor",
    "device_agent.executors.probe",  # doctor's version probe
    "device_agent.devserver",
    "device_agent.desktop.tray",
)

# `device-agent run --once`, stopped where it would send its first poll: prints how many times
# the executor profiles were read and every module imported by then.
RUN_TO_THE_FIRST_POLL = """
import os, sys
import device_agent.executors.profiles
from device_agent.server.client import LobuClient

reads = []
read_profiles = device_agent.executors.profiles.load_profiles

def counted(*args, **kwargs):
    reads.append(args)
    return read_profiles(*args, **kwargs)

async def first_poll(self, body):
    print("#", len(reads), *sorted(sys.modules), flush=True)
    os._exit(0)

device_agent.executors.profiles.load_profiles = counted
LobuClient.poll = first_poll
from device_agent.cli.main import main
main(["run", "--once", "--agent", "demo"])
"""


def imported_after(code: str, among: tuple[str, ...] = HEAVY) -> set[str]:
    """Which of `among` a fresh interpreter has imported after running `code`."""
    probe = f"{code}\nimport sys\nprint('#', *(m for m in {among!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(done.stdout.splitlines()[-1].split()[1:])  # the line after what `code` printed


@pytest.fixture(scope="module")
def at_the_first_poll(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, set[str]]:
    """(profile reads, modules imported) of `run` when it is about to send its first poll."""
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
    reads, *modules = marked[-1].split()[1:]
    return int(reads), set(modules)


def test_run_imports_only_what_its_first_poll_needs(
    at_the_first_poll: tuple[int, set[str]],
) -> None:
    _, modules = at_the_first_poll
    assert "device_agent.agent.app" in modules  # the probe stopped where it should
    early = modules & set(NOT_BEFORE_THE_FIRST_POLL)
    assert not early


def test_run_reads_the_executor_profiles_once(at_the_first_poll: tuple[int, set[str]]) -> None:
    reads, _ = at_the_first_poll
    assert reads == 1


def test_version_imports_nothing_heavy() -> None:
    code = "from device_agent.cli.main import main\ntry:\n    main(['--version'])\n"
    code += "except SystemExit:\n    pass"
    assert imported_after(code, among=(*HEAVY, "pathlib")) == set()


def test_building_the_trigger_parser_leaves_out_the_desktop_commands() -> None:
    code = "from device_agent.cli.main import _parser\n_parser(only='trigger')"
    assert imported_after(code) <= {"httpx", "asyncio", "device_agent.identity.commands"}
    assert "keyring" not in imported_after(code)


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
        if key != "handler":  # a fresh closure per parser
            assert getattr(alone, key) == value, key
