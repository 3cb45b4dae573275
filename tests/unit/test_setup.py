"""`device-agent setup`: its steps in order, and every question answered by a flag, so a
script can run it; without a terminal, a question no flag answers is refused up front."""

from __future__ import annotations

import argparse
import io
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from device_agent.cli.main import _parser
from device_agent.cli.setup import Agent, Steps, run_setup
from device_agent.config import Settings, load
from device_agent.identity.commands import Console
from device_agent.identity.errors import UsageError

SERVER = "https://lobu.example.com"
CLAUDE = Agent("claude-code", "claude", "/usr/local/bin/claude")
CODEX = Agent("codex", "codex", "/home/me/.npm-global/bin/codex")
GEMINI = Agent("gemini", "gemini", None)


@dataclass
class Fake:
    """Records what setup did, in order; answers as a signed-out machine with two CLIs."""

    agents: list[Agent] = field(default_factory=lambda: [CLAUDE, CODEX, GEMINI])
    stored: str | None = None  # what `signed_in` answers
    sign_in_code: int = 0
    done: list[str] = field(default_factory=list)
    login_options: argparse.Namespace | None = None
    service_args: argparse.Namespace | None = None

    def steps(self) -> Steps:
        return Steps(
            sign_in=self.sign_in,
            signed_in=lambda settings: self.stored,
            find_agents=lambda settings: self.agents,
            doctor=lambda settings, path: self.record(f"doctor {settings.default_agent}"),
            install_service=self.install,
            status=lambda settings: self.record("status") and None,
        )

    def sign_in(self, settings: Settings, options: argparse.Namespace) -> int:
        self.login_options = options
        self.done.append(f"sign in to {settings.origin}")
        return self.sign_in_code

    def install(self, settings: Settings, args: argparse.Namespace) -> int:
        self.service_args = args
        return self.record("service" + (" with tray" if args.with_tray else ""))

    def record(self, what: str) -> int:
        self.done.append(what)
        return 0


@dataclass
class Said:
    out: io.StringIO = field(default_factory=io.StringIO)
    err: io.StringIO = field(default_factory=io.StringIO)

    @property
    def console(self) -> Console:
        return Console(out=self.out, err=self.err)

    @property
    def text(self) -> str:
        return self.out.getvalue() + self.err.getvalue()


def parsed(*argv: str) -> argparse.Namespace:
    return _parser(only="setup").parse_args(["setup", "--server", SERVER, *argv])


def setup(home: Path, fake: Fake, *argv: str, ask: Any = None, said: Said | None = None) -> int:
    args = parsed(*argv)
    settings = load(overrides={"server": args.server})
    assert settings.paths.config_dir == home / "config"
    return run_setup(settings, args, steps=fake.steps(), ask=ask, console=(said or Said()).console)


def config(home: Path) -> dict[str, Any]:
    return tomllib.loads((home / "config" / "config.toml").read_text())


def test_agent_and_no_service_sign_in_save_the_agent_check_and_show_status(
    isolated_home: Path,
) -> None:
    fake = Fake()
    said = Said()
    assert setup(isolated_home, fake, "--agent", "codex", "--no-service", said=said) == 0
    assert fake.done == [f"sign in to {SERVER}", "doctor codex", "status"]
    assert config(isolated_home) == {"default_agent": "codex"}
    assert fake.login_options is not None
    assert (fake.login_options.local, fake.login_options.token_stdin) == (False, False)
    assert "Not installing the service: start the agent with `device-agent run`." in said.text


def test_yes_takes_the_first_agent_found_and_installs_the_service_with_the_tray(
    isolated_home: Path,
) -> None:
    fake = Fake()
    assert setup(isolated_home, fake, "--yes", "--with-tray", "--no-browser") == 0
    assert fake.done == [
        f"sign in to {SERVER}",
        "doctor claude-code",
        "service with tray",
        "status",
    ]
    assert config(isolated_home) == {"default_agent": "claude-code"}
    assert fake.login_options is not None
    assert fake.login_options.no_browser is True


def test_it_says_which_clis_were_found_and_which_were_not(isolated_home: Path) -> None:
    said = Said()
    assert setup(isolated_home, Fake(), "--yes", said=said) == 0
    assert (
        "CLI agents found on the service's PATH: claude-code (/usr/local/bin/claude), "
        "codex (/home/me/.npm-global/bin/codex)"
    ) in said.text
    assert "Not found: gemini (gemini)" in said.text


@pytest.mark.parametrize(
    ("argv", "needs"),
    [
        (("--no-service",), "choose the default with --agent NAME, or pass --yes"),
        (("--agent", "codex"), "pass --yes to install it, or --no-service"),
    ],
)
def test_without_a_terminal_an_unanswered_question_is_refused_before_signing_in(
    isolated_home: Path, argv: tuple[str, ...], needs: str
) -> None:
    fake = Fake()
    with pytest.raises(UsageError, match=needs):
        setup(isolated_home, fake, *argv, ask=None)
    assert fake.done == []
    assert not (isolated_home / "config" / "config.toml").exists()


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        ("gemini", "its CLI gemini is not on the service's PATH: install it, or choose one"),
        ("nonesuch", "no such executor profile; found here: claude-code, codex"),
    ],
)
def test_an_agent_that_cannot_run_here_is_refused_with_the_choices(
    isolated_home: Path, agent: str, message: str
) -> None:
    fake = Fake()
    with pytest.raises(UsageError, match=message):
        setup(isolated_home, fake, "--agent", agent, "--yes")
    assert fake.done == []


def test_with_no_cli_found_it_signs_in_then_says_what_to_install(isolated_home: Path) -> None:
    fake = Fake(agents=[GEMINI])
    said = Said()
    assert setup(isolated_home, fake, "--yes", said=said) == 2
    assert fake.done == [f"sign in to {SERVER}"]
    assert "CLI agents found on the service's PATH: none" in said.text
    assert "no CLI agent found on the service's PATH: install one" in said.text


def test_a_failed_sign_in_stops_it_with_the_login_exit_code(isolated_home: Path) -> None:
    fake = Fake(sign_in_code=3)
    assert setup(isolated_home, fake, "--yes") == 3
    assert fake.done == [f"sign in to {SERVER}"]


def test_a_stored_token_is_kept_and_the_server_still_saved(isolated_home: Path) -> None:
    fake = Fake(stored="headless:box-1")
    said = Said()
    assert setup(isolated_home, fake, "--agent", "claude-code", "--no-service", said=said) == 0
    assert fake.done == ["doctor claude-code", "status"]  # no sign-in
    assert f"Already signed in to {SERVER}: keeping that token" in said.text
    assert config(isolated_home) == {
        "server": SERVER,
        "worker_id": "headless:box-1",
        "default_agent": "claude-code",
    }


def test_the_configured_default_agent_is_kept_when_its_cli_is_found(isolated_home: Path) -> None:
    path = isolated_home / "config" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text('default_agent = "codex"  # my choice\n')
    said = Said()
    assert setup(isolated_home, Fake(), "--no-service", said=said) == 0  # no question needed
    assert path.read_text() == 'default_agent = "codex"  # my choice\n'
    assert f"Default agent: codex (as {path} already says)." in said.text


def test_an_explicit_agent_replaces_the_configured_one(isolated_home: Path) -> None:
    path = isolated_home / "config" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text('default_agent = "codex"  # my choice\n')
    fake = Fake()
    assert setup(isolated_home, fake, "--agent", "claude-code", "--no-service") == 0
    assert path.read_text() == 'default_agent = "claude-code"  # my choice\n'
    assert fake.done[1] == "doctor claude-code"


def test_on_a_terminal_it_asks_and_the_answers_are_taken(isolated_home: Path) -> None:
    questions: list[str] = []
    answers = ["2", "n"]

    def ask(question: str) -> str:
        questions.append(question)
        return answers.pop(0)

    fake = Fake()
    assert setup(isolated_home, fake, ask=ask) == 0
    assert "  2. codex (/home/me/.npm-global/bin/codex)" in questions[0]
    assert "Install the service" in questions[1]
    assert fake.done == [f"sign in to {SERVER}", "doctor codex", "status"]


def test_a_failing_step_gives_its_exit_code_after_the_rest_ran(isolated_home: Path) -> None:
    fake = Fake()
    steps = fake.steps()
    steps.install_service = lambda settings, args: fake.record("service refused") or 2
    args = parsed("--yes")
    code = run_setup(load(overrides={"server": SERVER}), args, steps=steps, ask=None)
    assert code == 2
    assert fake.done[-2:] == ["service refused", "status"]  # status is shown all the same


def test_setup_needs_a_server(isolated_home: Path) -> None:
    args = _parser(only="setup").parse_args(["setup", "--yes"])
    with pytest.raises(UsageError, match="setup needs the server to sign in to"):
        run_setup(load(), args, steps=Fake().steps(), ask=None)
