"""The `device-agent` command: argument parsing, exit codes and human output.

Exit codes (ARCHITECTURE §5): 0 did its job; 1 unexpected internal error;
2 usage or configuration error; 3 authentication needed; 4 server unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from device_agent import __version__, devserver
from device_agent.client import AnswerKind, LobuClient
from device_agent.credentials import (
    CredentialError,
    delete_token,
    resolve_token,
    store_token,
)
from device_agent.dispatcher import ExitCode
from device_agent.identity import resolve_worker_id
from device_agent.journal import DEAD, FINISHED, Journal, JournalError
from device_agent.lock import AlreadyRunning, InstanceLock, holder_pid
from device_agent.profiles import ProfileError
from device_agent.settings import ConfigError, Settings, load
from device_agent.statusfile import read_status

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Command | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return ExitCode.CONFIG
    try:
        return handler(args)
    except ConfigError as exc:
        _fail(f"configuration error: {exc}")
        return ExitCode.CONFIG
    except ProfileError as exc:
        _fail(f"executor profile error: {exc}")
        return ExitCode.CONFIG
    except AlreadyRunning as exc:
        _fail(str(exc))
        return ExitCode.CONFIG
    except CredentialError as exc:
        _fail(f"authentication needed: {exc}")
        return ExitCode.AUTH
    except JournalError as exc:
        _fail(str(exc))
        return ExitCode.INTERNAL
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: say so in one line, keep the traceback in the log
        structlog.get_logger(__name__).exception("internal error")
        _fail(
            f"internal error: {type(exc).__name__}: {exc} — the log has the details; "
            "please report it"
        )
        return ExitCode.INTERNAL


def _fail(message: str) -> None:
    print(f"device-agent: {message}", file=sys.stderr)


# ------------------------------------------------------------------ parser


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
    devserver.add_arguments(dev)
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


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {
        "server": getattr(args, "server", None),
        "worker_id": getattr(args, "worker_id", None),
        **extra,
    }
    return load(config_path=getattr(args, "config", None), overrides=overrides)


def _setup_logs(settings: Settings, args: argparse.Namespace, *secrets: str | None) -> None:
    from device_agent import logs

    settings.paths.ensure()
    level = logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
    logs.setup(log_file=settings.paths.log_file, console_level=level, secrets=secrets)


# ---------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    from device_agent.runner import run_agent

    settings = _settings(args, concurrency=args.concurrency, default_agent=args.default_agent)
    token = resolve_token(settings)
    _setup_logs(settings, args, token)
    worker_id = resolve_worker_id(settings)
    # `trigger` may poke us with SIGUSR1 as soon as we hold the lock; until the loop handles
    # it (and after), its default action would kill the agent.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    with InstanceLock(settings.paths.lock_file):
        return int(
            asyncio.run(run_agent(settings, token=token, worker_id=worker_id, once=args.once))
        )


def cmd_demo(args: argparse.Namespace) -> int:
    from device_agent.demo import run_demo

    return run_demo()


def cmd_dev_server(args: argparse.Namespace) -> int:
    return devserver.run_from_arguments(args)


def cmd_login(args: argparse.Namespace) -> int:
    settings = _settings(args)
    server = settings.origin
    if args.token_stdin or not sys.stdin.isatty():
        token = sys.stdin.readline().strip()
    else:
        import getpass

        token = getpass.getpass(f"Paste the device token for {server}: ").strip()
    code = asyncio.run(_check_token(server, token))
    if code != ExitCode.OK:
        return code
    store_token(server, token)
    print(f"Token for {server} stored in the OS keyring.")
    return ExitCode.OK


async def _check_token(server: str, token: str) -> int:
    async with LobuClient(server, lambda: token) as client:
        answer = await client.devices()
    if answer.kind is AnswerKind.AUTH:
        _fail(f"the server refused that token ({answer.describe()}); nothing was stored")
        return ExitCode.AUTH
    if answer.kind is AnswerKind.TRANSIENT and answer.status is None:
        _fail(f"cannot reach {server} to check the token ({answer.message}); nothing was stored")
        return ExitCode.UNREACHABLE
    return ExitCode.OK


def cmd_logout(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if delete_token(settings.origin):
        print(f"Token for {settings.origin} removed from the OS keyring.")
    else:
        print(f"No token stored for {settings.origin}.")
    return ExitCode.OK


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    status = read_status(settings.paths.state_dir / "status.json") or {}
    alive = holder_pid(settings.paths.lock_file) is not None
    counts: dict[str, int] = {}
    dead: list[dict[str, Any]] = []
    if settings.paths.journal_file.exists():
        journal = Journal(settings.paths.journal_file)
        try:
            counts = journal.counts()
            dead = [e.as_dict() for e in journal.in_state(DEAD)]
        finally:
            journal.close()
    report = {
        "running": alive,
        "agent": status,
        "journal": counts,
        "undelivered": counts.get(FINISHED, 0),
        "dead_letters": dead,
    }
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return ExitCode.OK
    _print_status(report)
    return ExitCode.OK


def _print_status(report: dict[str, Any]) -> None:
    agent = report["agent"]
    if report["running"]:
        print(
            f"agent: running (PID {agent.get('pid')}), {agent.get('state')}"
            + (f" — {agent['detail']}" if agent.get("detail") else "")
        )
        for run_id, name in (agent.get("running") or {}).items():
            print(f"  running run {run_id}: {name}")
    elif agent:
        print(
            f"agent: not running (last state: {agent.get('state')}, "
            f"{_ago(agent.get('updated_at'))})"
        )
    else:
        print("agent: not running (no state yet)")
    if agent.get("last_error"):
        print(f"last problem: {agent['last_error']}")
    print(f"results waiting to be delivered: {report['undelivered']}")
    for entry in report["dead_letters"]:
        print(
            f"  REJECTED run {entry['run_id']} ({entry['watcher_name']}): "
            f"{entry['server_message']} — output kept: device-agent history --run {entry['run_id']}"
        )


def cmd_history(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.paths.journal_file.exists():
        print("no runs yet")
        return ExitCode.OK
    journal = Journal(settings.paths.journal_file)
    try:
        if args.run_id is not None:
            return _show_run(journal, settings, args.run_id, as_json=args.json)
        entries = journal.recent(args.limit)
    finally:
        journal.close()
    if args.json:
        print(json.dumps([e.as_dict() for e in entries], indent=2, default=str))
        return ExitCode.OK
    rows = [
        [
            str(e.run_id),
            e.watcher_name or "-",
            e.agent_kind or "-",
            e.state,
            e.answer or "-",
            _duration(e.duration_ms),
            _when(e.claimed_at),
        ]
        for e in entries
    ]
    print(
        format_table(
            ["run", "watcher", "executor", "state", "server answer", "took", "claimed"], rows
        )
    )
    return ExitCode.OK


def _show_run(journal: Journal, settings: Settings, run_id: int, *, as_json: bool) -> int:
    matches = journal.with_run_id(run_id)
    if not matches:
        _fail(f"run {run_id} is not in the journal ({settings.paths.journal_file})")
        return ExitCode.CONFIG
    for entry in matches:
        if as_json:
            print(json.dumps(entry.as_dict(), indent=2, default=str))
            continue
        for key, value in entry.as_dict().items():
            if key != "output":
                print(f"{key:>15}: {value}")
        print("---- output ----")
        print(entry.output or "")
    return ExitCode.OK


def cmd_trigger(args: argparse.Namespace) -> int:
    settings = _settings(args)
    token = resolve_token(settings)
    code, message = asyncio.run(_trigger(settings.origin, token, args.watcher_id))
    (print if code == ExitCode.OK else _fail)(message)
    if code == ExitCode.OK:
        _poke_running_agent(settings)
    return code


async def _trigger(server: str, token: str, watcher_id: str) -> tuple[int, str]:
    async with LobuClient(server, lambda: token) as client:
        answer = await client.trigger(watcher_id=watcher_id)
        if answer.status == 403 and "not bound" in answer.message:
            # Unbound tokens (local-init PATs, OAuth) queue the same run via the tool proxy.
            slug = await _org_slug(client)
            if slug is not None:
                answer = await client.trigger_via_tools(org_slug=slug, watcher_id=watcher_id)
    if answer.ok and isinstance(answer.body, dict):
        run_id = answer.body.get("run_id")
        again = " (it was already queued)" if answer.body.get("already_queued") else ""
        return ExitCode.OK, f"queued run {run_id} for watcher {watcher_id}{again}"
    code = {AnswerKind.AUTH: ExitCode.AUTH, AnswerKind.TRANSIENT: ExitCode.UNREACHABLE}.get(
        answer.kind, ExitCode.CONFIG
    )
    return code, f"could not trigger watcher {watcher_id}: {answer.describe()}"


async def _org_slug(client: LobuClient) -> str | None:
    answer = await client.devices()
    items = (
        answer.body
        if isinstance(answer.body, list)
        else (answer.body.get("devices") if isinstance(answer.body, dict) else None)
    )
    for item in items or []:
        if isinstance(item, dict) and isinstance(item.get("organization_slug"), str):
            return str(item["organization_slug"])
    return None


def _poke_running_agent(settings: Settings) -> None:
    """Make a running agent poll now instead of at its next interval."""
    pid = holder_pid(settings.paths.lock_file)
    try:
        if pid is None:
            raise ProcessLookupError
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        print("no agent is running here; it will be picked up when one polls")
    except PermissionError:
        print(f"the agent (PID {pid}) runs as another user; it will pick it up at its next poll")
    else:
        print("the running agent will pick it up now")


def cmd_doctor(args: argparse.Namespace) -> int:
    from device_agent.doctor import run_doctor

    return run_doctor(_settings(args))


# ------------------------------------------------------------------ format


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _duration(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f}s"


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _ago(ts: object) -> str:
    if not isinstance(ts, int | float):
        return "unknown time"
    return f"{int(time.time() - ts)} s ago"


if __name__ == "__main__":
    sys.exit(main())
