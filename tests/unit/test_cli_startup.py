"""Start-up pays only for the command used: no heavy import before it is needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from device_agent.cli import _parser

HEAVY = ("httpx", "keyring", "asyncio", "device_agent.service", "device_agent.auth.commands")


def imported_after(code: str) -> set[str]:
    """Which of HEAVY a fresh interpreter has imported after running `code`."""
    probe = f"{code}\nimport sys\nprint('#', *(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(done.stdout.splitlines()[-1].split()[1:])  # the line after what `code` printed


def test_version_imports_nothing_heavy() -> None:
    code = "from device_agent.cli import main\ntry:\n    main(['--version'])\n"
    code += "except SystemExit:\n    pass"
    assert imported_after(code) == set()


def test_building_the_trigger_parser_leaves_out_the_desktop_commands() -> None:
    code = "from device_agent.cli import _parser\n_parser(only='trigger')"
    assert imported_after(code) <= {"httpx", "asyncio", "device_agent.auth.commands"}
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
