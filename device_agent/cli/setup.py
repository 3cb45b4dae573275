"""`device-agent setup --server URL`: from a fresh install to a running service, guided.

Signs in (the device flow, as `login` does; skipped when a token for the server is stored),
picks the default agent among the CLIs found on the service's PATH (saying which were not
found), saves server, worker_id and default_agent in the config file, runs `doctor`,
installs the service (and the tray with --with-tray), and shows `status`.

Every question has a flag — `--agent NAME`, `--yes` (take the suggested answers),
`--no-service` — and without a terminal a question that no flag answers is refused before
anything is done, so a script can run it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from device_agent.cli.common import settings_from
from device_agent.cli.desktop import flags_given, install_service
from device_agent.cli.doctor import run_doctor
from device_agent.cli.status import gather, render
from device_agent.config import Settings, config_file_in_use, read_config_file
from device_agent.config_file import remember
from device_agent.desktop.service import service_path, this_program
from device_agent.errors import ConfigError, ExitCode
from device_agent.executors.profiles import load_profiles
from device_agent.identity.commands import Console, login, remember_login
from device_agent.identity.credentials import token_store
from device_agent.identity.errors import UsageError
from device_agent.identity.store import StoreError

# The CLI agents setup offers, most likely first (the executor profiles of AGENT_KINDS).
AGENTS: Final = ("claude-code", "codex", "gemini", "opencode", "pi", "agy")

Ask = Callable[[str], str]


@dataclass(frozen=True)
class Agent:
    name: str  # the executor profile
    program: str  # the CLI it runs
    path: str | None  # where it was found on the service's PATH, None: not found


@dataclass
class Steps:
    """What setup does, each step replaceable in tests."""

    sign_in: Callable[[Settings, argparse.Namespace], int]
    signed_in: Callable[[Settings], str | None]  # the worker_id of a stored token, "" unbound
    find_agents: Callable[[Settings], list[Agent]]
    doctor: Callable[[Settings, Path], int]
    install_service: Callable[[Settings, argparse.Namespace], int]
    status: Callable[[Settings], None]
    reload: Callable[[argparse.Namespace], Settings] = field(default=settings_from)


def add_setup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", help="the default agent (executor profile), e.g. codex")
    parser.add_argument(
        "--yes", action="store_true", help="take the suggested answers: no questions asked"
    )
    parser.add_argument(
        "--no-service", action="store_true", help="do not install the service (run it yourself)"
    )
    parser.add_argument(
        "--with-tray", action="store_true", help="also start the tray menu at login"
    )
    parser.add_argument(
        "--no-browser", action="store_true", help="only print the sign-in address and code"
    )


def cmd_setup(args: argparse.Namespace) -> int:
    ask = _ask if sys.stdin.isatty() else None
    return run_setup(settings_from(args), args, steps=default_steps(), ask=ask)


def run_setup(
    settings: Settings,
    args: argparse.Namespace,
    *,
    steps: Steps,
    ask: Ask | None,
    console: Console | None = None,
) -> int:
    """Do the whole setup; the exit code of the first step that failed, else 0.

    `ask` asks the user a question (None: there is no terminal to ask on)."""
    console = console or Console()
    if settings.server is None:
        raise UsageError(
            "setup needs the server to sign in to: `device-agent setup --server "
            "https://lobu.example.com`"
        )
    agents = steps.find_agents(settings)
    _say_agents(agents, console)
    # Every question before anything is done: a script without a flag fails fast.
    choice = _choose_agent(settings, args, agents, ask)
    install = _wants_service(args, ask)
    if install is None:
        install = _yes(ask, "Install the service, so that the agent runs at login?")

    code = _sign_in(settings, args, steps, console)
    if code != ExitCode.OK:
        return code
    path, _ = config_file_in_use(settings.paths, args.config)
    if choice is None:
        console.fail(
            "no CLI agent found on the service's PATH: install one (Claude Code, Codex, "
            "Gemini CLI, OpenCode, pi or agy), then run `device-agent setup` again"
        )
        return ExitCode.CONFIG
    try:
        _save_agent(path, choice, args, console)
        settings = steps.reload(args)  # what the config file now says
    except ConfigError as exc:
        console.fail(exc.user_message())
        return ExitCode.CONFIG

    console.say("\nChecking (device-agent doctor):")
    results = [steps.doctor(settings, path)]
    if install:
        console.say("\nInstalling the service (device-agent service install):")
        results.append(steps.install_service(settings, args))
    else:
        console.say("\nNot installing the service: start the agent with `device-agent run`.")
    console.say("\nNow (device-agent status):")
    steps.status(settings)
    return next((code for code in results if code != ExitCode.OK), ExitCode.OK)


def _choose_agent(
    settings: Settings, args: argparse.Namespace, agents: list[Agent], ask: Ask | None
) -> Agent | None:
    """The agent to make the default, None when none was found; a usage error when the
    user's choice is impossible, or a choice is needed and nobody can be asked."""
    found = [agent for agent in agents if agent.path]
    named = ", ".join(agent.name for agent in found) or "none"
    if args.agent:
        chosen = next((agent for agent in agents if agent.name == args.agent), None)
        if chosen is None:
            raise UsageError(
                f"--agent {args.agent}: no such executor profile; found here: {named} "
                "(`device-agent doctor` lists every profile)"
            )
        if not chosen.path:
            raise UsageError(
                f"--agent {args.agent}: its CLI {chosen.program} is not on the service's PATH: "
                f"install it, or choose one found here: {named}"
            )
        return chosen
    configured = next(
        (agent for agent in found if agent.name == _configured_agent(settings, args)), None
    )
    if configured is not None or len(found) <= 1:
        return configured or (found[0] if found else None)
    if args.yes:
        return found[0]
    if ask is None:
        raise UsageError(
            f"several CLI agents found ({named}): choose the default with --agent NAME, "
            f"or pass --yes to take {found[0].name}"
        )
    return _pick(found, ask)


def _configured_agent(settings: Settings, args: argparse.Namespace) -> str | None:
    """The default_agent the config file sets itself (not the built-in default)."""
    path, _ = config_file_in_use(settings.paths, args.config)
    value = read_config_file(path).get("default_agent")
    return value if isinstance(value, str) else None


def _pick(found: list[Agent], ask: Ask) -> Agent:
    lines = [f"  {n}. {agent.name} ({agent.path})" for n, agent in enumerate(found, 1)]
    question = "\n".join(["Which CLI agent runs the runs that name none?", *lines, "Number [1]: "])
    while True:
        answer = ask(question).strip() or "1"
        if answer.isdigit() and 1 <= int(answer) <= len(found):
            return found[int(answer) - 1]
        by_name = next((agent for agent in found if agent.name == answer), None)
        if by_name is not None:
            return by_name


def _wants_service(args: argparse.Namespace, ask: Ask | None) -> bool | None:
    """True or False when the flags say; None: ask (there is a terminal)."""
    if args.no_service:
        return False
    if args.yes:
        return True
    if ask is None:
        raise UsageError(
            "no terminal to ask whether to install the service: pass --yes to install it, "
            "or --no-service"
        )
    return None


def _yes(ask: Ask | None, question: str) -> bool:
    if ask is None:
        return False
    return ask(f"{question} [Y/n] ").strip().lower() in ("", "y", "yes")


def _sign_in(settings: Settings, args: argparse.Namespace, steps: Steps, console: Console) -> int:
    bound = steps.signed_in(settings)
    if bound is None:
        login = argparse.Namespace(
            local=False, token_stdin=False, no_browser=args.no_browser, config=args.config
        )
        return steps.sign_in(settings, login)
    console.say(
        f"Already signed in to {settings.origin}: keeping that token "
        "(`device-agent logout` first to sign in again)."
    )
    return remember_login(settings, args.config, console, worker_id=bound or None)


def _say_agents(agents: list[Agent], console: Console) -> None:
    found = [f"{agent.name} ({agent.path})" for agent in agents if agent.path]
    missing = [f"{agent.name} ({agent.program})" for agent in agents if not agent.path]
    console.say(f"CLI agents found on the service's PATH: {', '.join(found) or 'none'}")
    if missing:
        console.say(f"Not found: {', '.join(missing)}")


def _save_agent(path: Path, choice: Agent, args: argparse.Namespace, console: Console) -> None:
    done = remember(
        path, {"default_agent": choice.name}, replace={"default_agent"} if args.agent else ()
    )
    if done.written:
        console.say(f"Default agent: {choice.name}, saved in {path}.")
    else:
        console.say(f"Default agent: {choice.name} (as {path} already says).")


# ------------------------------------------------------------------ the real steps


def default_steps() -> Steps:
    return Steps(
        sign_in=_login,
        signed_in=_stored_binding,
        find_agents=find_agents,
        doctor=_doctor,
        install_service=_install_service,
        status=_status,
    )


def _login(settings: Settings, options: argparse.Namespace) -> int:
    return login(settings, options)


def _stored_binding(settings: Settings) -> str | None:
    """None when no usable token for the server is stored; else the worker_id it is bound
    to ("" for a pasted token, whose binding is unknown)."""
    try:
        credential = token_store(settings).load()
    except StoreError:
        return None
    if credential is None or credential.refused:
        return None
    return credential.worker_id if credential.bound and credential.worker_id else ""


def find_agents(settings: Settings) -> list[Agent]:
    """The CLI agents' profiles and where each CLI is on the PATH the service gets."""
    profiles = load_profiles(user_dir=settings.paths.profiles_dir)
    path = service_path(
        os.environ.get("PATH", os.defpath),
        home=Path.home(),
        program=this_program(sys.argv[0], sys.executable),
    )
    return [
        Agent(name, profiles[name].program, profiles[name].resolve(path))
        for name in AGENTS
        if name in profiles and profiles[name].configured
    ]


def _doctor(settings: Settings, config_file: Path) -> int:
    return run_doctor(settings, config_file=config_file)


def _install_service(settings: Settings, args: argparse.Namespace) -> int:
    return install_service(settings, with_tray=args.with_tray, flags=flags_given(args))


def _status(settings: Settings) -> None:
    print(render(gather(settings)))


def _ask(question: str) -> str:
    try:
        return input(question)
    except EOFError:
        return ""
