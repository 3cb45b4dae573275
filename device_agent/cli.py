"""The `device-agent` command: argument parsing and the one error handler.

Each subcommand lives in `device_agent.commands`; exit codes come from
`device_agent.errors` (0 did its job; 1 unexpected internal error; 2 usage or
configuration error; 3 authentication needed; 4 server unreachable).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from device_agent import __version__
from device_agent.commands import fail
from device_agent.commands.demo import add_dev_server_arguments, cmd_demo, cmd_dev_server
from device_agent.commands.doctor import cmd_doctor
from device_agent.commands.history import cmd_history
from device_agent.commands.login import cmd_login, cmd_logout
from device_agent.commands.run import cmd_run
from device_agent.commands.status import cmd_status
from device_agent.commands.trigger import cmd_trigger
from device_agent.errors import DeviceAgentError, ExitCode
from device_agent.umask import make_private

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Command | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return ExitCode.CONFIG
    make_private()
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        code, message = _explain(exc)
        fail(message)
        return code


def _explain(exc: Exception) -> tuple[ExitCode, str]:
    if isinstance(exc, DeviceAgentError):
        return exc.exit_code, exc.user_message()
    from device_agent.credentials import CredentialError

    # credentials.py is being rewritten; until its errors join the root, map them here.
    if isinstance(exc, CredentialError):
        return ExitCode.AUTH, f"authentication needed: {exc}"
    import structlog  # a bug: say so in one line, keep the traceback in the log

    structlog.get_logger(__name__).error("internal error", exc_info=exc)
    return ExitCode.INTERNAL, (
        f"internal error: {type(exc).__name__}: {exc} — the log has the details; please report it"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="device-agent",
        description="Runs the watcher runs a Lobu server pins to this device with a CLI agent.",
    )
    parser.add_argument("--version", action="version", version=f"device-agent {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="config file (default: the user config dir)")
    common.add_argument("--server", help="Lobu server URL (overrides DEVICE_AGENT_SERVER)")
    common.add_argument("--worker-id", dest="worker_id", help="this device's worker id")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logs on the terminal")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = sub.add_parser(
        "run", parents=[common], help="poll and run watcher runs (what the service runs)"
    )
    run.add_argument("--once", action="store_true", help="one poll; run what was claimed; exit")
    run.add_argument("--concurrency", type=int, help="runs at once (default 1)")
    run.add_argument("--agent", dest="default_agent", help="executor for runs without agent_kind")
    run.set_defaults(handler=cmd_run)

    demo = sub.add_parser(
        "demo", help="try it offline: local dev server, sample watchers, demo agent"
    )
    demo.set_defaults(handler=cmd_demo)

    dev = sub.add_parser("dev-server", help="a Lobu-compatible server on loopback, for experiments")
    add_dev_server_arguments(dev)
    dev.set_defaults(handler=cmd_dev_server)

    login = sub.add_parser("login", parents=[common], help="store a token in the OS keyring")
    login.add_argument("--token-stdin", action="store_true", help="read the token from stdin")
    login.set_defaults(handler=cmd_login)
    logout = sub.add_parser("logout", parents=[common], help="remove the stored token")
    logout.set_defaults(handler=cmd_logout)

    status = sub.add_parser("status", parents=[common], help="what the agent is doing")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)

    history = sub.add_parser("history", parents=[common], help="recent runs from the journal")
    history.add_argument("--json", action="store_true")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--run", type=int, dest="run_id", help="show one run in full")
    history.set_defaults(handler=cmd_history)

    trigger = sub.add_parser("trigger", parents=[common], help='"Run now": queue a watcher')
    trigger.add_argument("watcher_id")
    trigger.set_defaults(handler=cmd_trigger)

    doctor = sub.add_parser("doctor", parents=[common], help="check server, token, CLIs, dirs")
    doctor.set_defaults(handler=cmd_doctor)
    return parser


if __name__ == "__main__":
    sys.exit(main())
