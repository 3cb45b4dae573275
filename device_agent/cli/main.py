"""The `device-agent` command: argument parsing and the one error handler.

Each subcommand lives in its own module of `device_agent.cli`, imported by its
handler here when that command runs; exit codes come from
`device_agent.errors` (0 did its job; 1 unexpected internal error; 2 usage or
configuration error; 3 authentication needed; 4 server unreachable).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from device_agent import __version__
from device_agent.cli.output import fail
from device_agent.errors import DeviceAgentError, ExitCode
from device_agent.umask import make_private

Command = Callable[[argparse.Namespace], int]
Parser = argparse.ArgumentParser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser(only=argv[0] if argv else None)
    args = parser.parse_args(argv)
    handler: Command | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return ExitCode.CONFIG
    make_private()
    try:
        code = handler(args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is handled below
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _reader_went_away()
    except Exception as exc:
        code, message = _explain(exc)
        fail(message)
        return code


def _reader_went_away() -> int:
    """`device-agent history | head`: the reader stopped, which is not our failure. Point
    stdout at /dev/null so the interpreter's final flush does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return ExitCode.OK


def _explain(exc: Exception) -> tuple[ExitCode, str]:
    if isinstance(exc, DeviceAgentError):
        return exc.exit_code, exc.user_message()
    # A bug: say so in one line, keep the traceback in the log.
    from device_agent.logs import get_logger  # structlog: --version and --help never log

    get_logger(__name__).error("internal error", exc_info=exc)
    return ExitCode.INTERNAL, (
        f"internal error: {type(exc).__name__}: {exc} — the log has the details; please report it"
    )


# A command's module is imported by its handler below, when that command runs: `--version`,
# `status` and `trigger` never import the daemon (agent.app and its loop) that `run` assembles.


def _run(args: argparse.Namespace) -> int:
    from device_agent.cli import run

    return run.cmd_run(args)


def _demo(args: argparse.Namespace) -> int:
    from device_agent.demo import session

    return session.run_demo()


def _dev_server(args: argparse.Namespace) -> int:
    from device_agent import devserver

    return devserver.run_from_arguments(args)


def _dev_server_arguments(parser: Parser) -> None:
    from device_agent import devserver

    devserver.add_dev_server_arguments(parser)


def _setup(args: argparse.Namespace) -> int:
    from device_agent.cli import setup

    return setup.cmd_setup(args)


def _setup_arguments(parser: Parser) -> None:
    from device_agent.cli import setup

    setup.add_setup_arguments(parser)


def _login(args: argparse.Namespace) -> int:
    from device_agent.cli.common import settings_from
    from device_agent.identity import commands

    return commands.login(settings_from(args), args)


def _login_arguments(parser: Parser) -> None:
    from device_agent.identity import commands

    commands.add_login_arguments(parser)


def _logout(args: argparse.Namespace) -> int:
    from device_agent.cli.common import settings_from
    from device_agent.identity import commands

    return commands.logout(settings_from(args), args)


def _status(args: argparse.Namespace) -> int:
    from device_agent.cli import status

    return status.cmd_status(args)


def _history(args: argparse.Namespace) -> int:
    from device_agent.cli import history

    return history.cmd_history(args)


def _trigger(args: argparse.Namespace) -> int:
    from device_agent.cli import trigger

    return trigger.cmd_trigger(args)


def _trigger_arguments(parser: Parser) -> None:
    from device_agent.cli import trigger

    trigger.add_trigger_arguments(parser)


def _pause(args: argparse.Namespace) -> int:
    from device_agent.cli import control

    return control.cmd_pause(args)


def _resume(args: argparse.Namespace) -> int:
    from device_agent.cli import control

    return control.cmd_resume(args)


def _logs(args: argparse.Namespace) -> int:
    from device_agent.cli import logs

    return logs.cmd_logs(args)


def _service(args: argparse.Namespace) -> int:
    from device_agent.cli import desktop

    return desktop.cmd_service(args)


def _service_parser(sub: argparse._SubParsersAction[Parser], parents: list[Parser]) -> Parser:
    from device_agent.desktop import service

    return service.add_arguments(sub, parents=parents)


def _tray(args: argparse.Namespace) -> int:
    from device_agent.cli import desktop

    return desktop.cmd_tray(args)


def _tray_parser(sub: argparse._SubParsersAction[Parser], parents: list[Parser]) -> Parser:
    from device_agent.desktop import tray

    return tray.add_arguments(sub, parents=parents)


def _doctor(args: argparse.Namespace) -> int:
    from device_agent.cli import doctor

    return doctor.cmd_doctor(args)


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `only` (the first argument) naming a command, just that
    command's subparser, so `device-agent run` never imports what `login` or `service` need
    to define their options; with `--version`, no command. Anything else builds everything,
    for the help and argparse's "invalid choice" message."""
    parser = argparse.ArgumentParser(
        prog="device-agent",
        description=(
            "Runs on your own machine the watcher and automation runs a Lobu server pins to it, "
            "with a local CLI agent (Claude Code, Codex, Gemini CLI, OpenCode, or a command)."
        ),
        epilog=(
            "Start here: device-agent setup --server URL (or login, doctor, service install)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"device-agent {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", type=Path, help="config file (default: DEVICE_AGENT_CONFIG or the config dir)"
    )
    common.add_argument("--server", help="Lobu server URL (overrides DEVICE_AGENT_SERVER)")
    common.add_argument(
        "--worker-id", dest="worker_id", help="this device's worker id (overrides the config)"
    )
    common.add_argument("-v", "--verbose", action="store_true", help="debug logs on the terminal")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    known = {"run", "demo", "dev-server", "login", "logout", "status", "history", "trigger"}
    known |= {"pause", "resume", "logs", "service", "tray", "doctor", "setup"}
    everything = only not in known and only != "--version"  # which needs no command at all

    def wanted(name: str) -> bool:
        return everything or name == only

    def command(
        name: str,
        handler: Command,
        summary: str,
        *,
        example: str = "",
        shared: bool = True,
        arguments: Callable[[Parser], None] | None = None,
    ) -> Parser:
        """A subcommand whose --help says `summary` as a sentence, with an example;
        `arguments` adds its options."""
        if not wanted(name):
            return Parser(add_help=False)  # not the command run: its options go nowhere
        made = sub.add_parser(
            name,
            parents=[common] if shared else [],
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=f"example: {example}" if example else None,
        )
        made.set_defaults(handler=handler)
        if arguments is not None:
            arguments(made)
        return made

    run = command(
        "run",
        _run,
        "poll the server and run what it pins to this device (what the service runs)",
        example="device-agent run --once --agent codex",
    )
    run.add_argument("--once", action="store_true", help="one poll; run what was claimed; exit")
    run.add_argument("--concurrency", type=int, help="runs at once (default 1)")
    run.add_argument(
        "--agent", dest="default_agent", help="executor profile for runs that name none"
    )

    command(
        "demo",
        _demo,
        "try it offline: a local dev server, sample watchers and a demo agent",
        shared=False,
    )
    command(
        "dev-server",
        _dev_server,
        "a Lobu-compatible server on loopback; prints a `run` line to paste as is",
        example="device-agent dev-server --port 8787",
        shared=False,
        arguments=_dev_server_arguments,
    )

    command(
        "setup",
        _setup,
        "sign in, choose the default agent, check, install the service and show status",
        example="device-agent setup --server https://lobu.example.com --agent codex --yes",
        arguments=_setup_arguments,
    )

    command(
        "login",
        _login,
        "sign this device in: a token bound to this device, kept in the OS keyring or a 0600 file",
        example="device-agent login --server https://lobu.example.com",
        arguments=_login_arguments,
    )
    command(
        "logout",
        _logout,
        "revoke and remove this device's stored token",
    )

    status = command(
        "status",
        _status,
        "what the agent is doing now: state, runs, last poll, results waiting, problems",
        example="device-agent status --json | jq .state",
    )
    status.add_argument("--json", action="store_true", help="machine-readable, stable keys")

    history = command(
        "history",
        _history,
        "recent runs from the journal, or one run in full",
        example="device-agent history --run 42",
    )
    history.add_argument("--json", action="store_true", help="machine-readable, ISO times")
    history.add_argument(
        "--limit", type=int, default=20, help="how many recent runs to list (default 20)"
    )
    history.add_argument("--run", type=int, dest="run_id", help="show one run in full, by run id")
    history.add_argument(
        "--transcript",
        action="store_true",
        help="with --run: what the agent did, round by round (with --json: the JSONL as kept)",
    )

    command(
        "trigger",
        _trigger,
        '"Run now": ask the server to queue a watcher or automation run, then the agent to poll',
        example="device-agent trigger 42 --lane automation",
        arguments=_trigger_arguments,
    )

    command("pause", _pause, "stop claiming new runs; running ones finish")
    resume = command(
        "resume",
        _resume,
        "claim runs again, polling at once",
        example="device-agent resume --past-limit",
    )
    resume.add_argument(
        "--past-limit",
        action="store_true",
        help="go on past the daily limit ([limits] in the config) until the day turns",
    )

    logs = command(
        "logs",
        _logs,
        "show the agent's log, or follow it",
        example="device-agent logs -f --run 42",
    )
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("--run", type=int, dest="run_id", help="only this run's lines")
    logs.add_argument(
        "-n", "--lines", type=int, default=50, help="how many recent lines first (default 50)"
    )

    # These two define their own subparsers.
    if wanted("service"):
        _service_parser(sub, [common]).set_defaults(handler=_service)
    if wanted("tray"):
        _tray_parser(sub, [common]).set_defaults(handler=_tray)

    command(
        "doctor",
        _doctor,
        "check server, token, CLIs (as the service finds them), config and directories",
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
