"""`device-agent status`: what the agent is doing now — the one place that tells the truth.

The running daemon answers over its control socket (state, pause, current runs,
last poll, why results wait); the journal adds the backlog, the dead letters
and its own size, so with no daemon running status still says what is left to
do — and whether the last agent died while a poll was held, when a run may
have been claimed and lost (`agent.status.PossiblyLostClaim`).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

from device_agent import __version__
from device_agent.agent.journal import DEAD, FINISHED, Journal, disk_bytes
from device_agent.agent.limits import limit_report, plural, usd
from device_agent.agent.status import PossiblyLostClaim
from device_agent.agent.usage import DayTotals, local_day
from device_agent.cli.common import settings_from
from device_agent.cli.control import ask_daemon
from device_agent.cli.output import ago, elapsed, iso, printable
from device_agent.config import ConfigError, Settings
from device_agent.desktop.control_client import (
    STATUS_SCHEMA_VERSION,
    ControlError,
    DaemonNotRunning,
)
from device_agent.errors import ExitCode
from device_agent.identity.credentials import token_status

TAIL_LINES = 3  # of a running run's output, in the human view
# How long after an abandoned poll `status` still mentions it: a run the server claimed into
# it, never heartbeated, waits this long for the server's backstop (docs/protocol.md).
STRANDED_RUN_SECONDS = 2 * 3600


def cmd_status(args: argparse.Namespace) -> int:
    report = gather(settings_from(args))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    return ExitCode.OK


def gather(settings: Settings) -> dict[str, Any]:
    """The status report; its keys are stable (`schema_version` changes when they do)."""
    daemon: dict[str, Any] = {}
    note = None
    try:
        daemon = ask_daemon(settings, "status")
    except DaemonNotRunning:
        note = "the daemon is not running: start it with `device-agent run`"
    except ControlError as exc:
        note = str(exc)
    # The running daemon knows its server even when this shell has no DEVICE_AGENT_SERVER.
    settings = replace(settings, server=daemon.get("server") or settings.server)
    waiting = {item["run_id"]: item["waiting_because"] for item in daemon.get("backlog", [])}
    view = _journal_view(settings)
    for item in view.backlog:
        item["waiting_because"] = waiting.get(item["run_id"]) or (
            "queued; sent at the next attempt" if daemon else "the daemon is not running"
        )
    # A running daemon says itself what it found at its start; without one, the journal does.
    problems = daemon.get("problems", []) if daemon else view.problems
    return {
        "schema_version": STATUS_SCHEMA_VERSION,
        "version": __version__,
        "daemon_running": bool(daemon),
        "daemon_note": note,
        "daemon_version": daemon.get("version"),
        "pid": daemon.get("pid"),
        "server": settings.server,
        "worker_id": daemon.get("worker_id"),
        "state": daemon.get("state", "not running"),
        "paused": bool(daemon.get("paused")),
        "runs": daemon.get("runs", []),
        "last_poll_at": iso(daemon.get("last_poll_at")),
        "backlog": view.backlog,
        "dead_letters": view.dead,
        "journal": view.about,
        "problems": problems,
        "poll_abandoned": view.abandoned,
        # Today's usage and the owner's daily limits: the daemon's, else from the journal.
        "limit": _limit(settings, daemon.get("limit")),
        **_token(settings, daemon.get("token_home")),
    }


def _limit(settings: Settings, daemons: dict[str, Any] | None) -> dict[str, Any]:
    """The day's usage and limits (`limits.limit_report`), `resumes_at` as an ISO time."""
    report = daemons
    if not isinstance(report, dict):
        now = time.time()
        totals = DayTotals(local_day(now))
        if settings.paths.journal_file.exists():

            journal = Journal(settings.paths.journal_file)
            try:
                totals = journal.usage.day_totals(totals.day)
            finally:
                journal.close()
        report = limit_report(settings.limits, totals, now)
    resumes = report.get("resumes_at")
    return {**report, "resumes_at": iso(resumes if isinstance(resumes, int | float) else None)}


def _token(settings: Settings, daemons: str | None) -> dict[str, str | None]:
    """Where the token lives and what is wrong with it; `daemons` is where the running
    daemon says its token came from, when this shell cannot see it (its environment)."""
    if daemons:
        return {"token_home": daemons, "token_problem": None}
    try:
        home, problem = token_status(settings)
        return {"token_home": home, "token_problem": problem}
    except ConfigError as exc:  # no server yet: there is no token to look for
        return {"token_home": None, "token_problem": str(exc)}


@dataclass
class _JournalView:
    about: dict[str, Any]  # path, bytes on disk, runs kept
    backlog: list[dict[str, Any]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    abandoned: dict[str, Any] | None = None  # a poll given up on recently enough to matter


def _journal_view(settings: Settings) -> _JournalView:
    """What the journal says; it reads no run's output. `abandoned`: the latest poll given
    up on before its answer, if that was recent enough for a run claimed into it to be
    stranded still."""
    path = settings.paths.journal_file
    view = _JournalView({"path": str(path), "bytes": disk_bytes(path), "runs": 0})
    if not path.exists():
        return view
    journal = Journal(path)
    try:
        view.about["runs"] = sum(journal.counts().values())
        held = journal.unanswered_poll()  # it names its server
        if settings.server is not None:
            waiting = journal.in_state(FINISHED, server=settings.origin)
            dead = journal.in_state(DEAD, server=settings.origin)
            noted = journal.abandoned_poll(settings.origin)
    finally:
        journal.close()
    if held is not None:
        lost = PossiblyLostClaim(held.server, held.since)
        if lost.matters(time.time()):
            view.problems.append(lost.note())
    if settings.server is None:
        return view
    if noted is not None and time.time() - noted[0] < STRANDED_RUN_SECONDS:
        view.abandoned = {"at": iso(noted[0]), "reason": noted[1]}
    view.backlog = [
        {
            "run_id": e.run_id,
            "name": e.watcher_name,
            "finished_at": iso(e.finished_at),
            "attempts": e.attempts,
        }
        for e in waiting
    ]
    view.dead = [
        {
            "run_id": e.run_id,
            "name": e.watcher_name,
            "finished_at": iso(e.finished_at),
            "answer": e.answer,
            "server_message": e.server_message,
        }
        for e in dead
    ]
    return view


def render(report: dict[str, Any]) -> str:
    """The human view of `gather`'s report."""
    lines = []
    if report["daemon_running"]:
        state = "" if report["state"] == "paused" else f", {report['state']}"
        paused = ", PAUSED (`device-agent resume` to go on)" if report["paused"] else ""
        lines.append(f"agent: running (PID {report['pid']}){state}{paused}")
        lines.append(f"  last poll:  {ago(report['last_poll_at'])}")
    else:
        lines.append(f"agent: not running — {report['daemon_note']}")
    lines.append(f"  server:     {report['server'] or 'none configured'}" + _worker(report))
    token = " — ".join(filter(None, (report["token_home"], report["token_problem"])))
    lines.append(f"  token:      {token}")
    lines.append(f"  version:    device-agent {report['version']}")
    lines.append(f"  journal:    {describe_journal(report['journal'])}")
    for problem in report["problems"]:
        lines.append(f"problem: {problem}")
    if abandoned := report["poll_abandoned"]:
        lines.append(
            f"poll abandoned: {ago(abandoned['at'])}, {printable(abandoned['reason'])}. A run "
            "the server handed to that poll was never received here: it shows as running on "
            "the server until the server reaps it (up to 2 hours); cancel it in the Lobu web "
            "app to have it run sooner"
        )
    lines += _limit_lines(report["limit"])
    for run in report["runs"]:
        lines.append(
            f"running: run {run['run_id']} — {printable(run['name'])} ({run['lane']}), "
            f"for {elapsed(run['elapsed_seconds'])}"
        )
        for line in run["output_tail"].rstrip().splitlines()[-TAIL_LINES:]:
            lines.append(f"  | {printable(line)}")
    lines.append(f"results waiting to be delivered: {len(report['backlog']) or 'none'}")
    for item in report["backlog"]:
        lines.append(
            f"  run {item['run_id']} ({printable(item['name'] or '-')}), "
            f"{item['attempts']} attempts: {printable(item['waiting_because'])}"
        )
    for dead in report["dead_letters"]:
        lines.append(
            f"REFUSED by the server: run {dead['run_id']} ({printable(dead['name'] or '-')}): "
            f"{printable(dead['server_message'] or dead['answer'] or '-')} — output kept: "
            f"device-agent history --run {dead['run_id']}"
        )
    return "\n".join(lines)


def describe_journal(about: dict[str, Any]) -> str:
    """The journal's size in words: `status` and `doctor` say it the same way."""
    if not about["bytes"]:
        return f"none yet ({about['path']})"
    runs = about["runs"]
    return (
        f"{about['bytes'] / 2**20:.1f} MiB, {runs} run{'' if runs == 1 else 's'} ({about['path']})"
    )


def _limit_lines(limit: dict[str, Any]) -> list[str]:
    """Today's usage against the owner's daily limits, in words."""
    today, limits = limit.get("today") or {}, limit.get("limits") or {}
    cost = usd(float(today.get("cost_usd") or 0))
    if today.get("cost_partial"):
        unpriced = plural(int(today.get("unpriced_runs") or 0), "run")
        cost += f" (partial: {unpriced} whose CLI reports no cost)"
    lines = [
        f"today: {plural(int(today.get('runs') or 0), 'run')}, {cost}, "
        f"{plural(int(today.get('tokens') or 0), 'token')} "
        f"({today.get('tokens_in', 0):,} in, {today.get('tokens_out', 0):,} out)"
    ]
    caps = []
    if limits.get("daily_usd") is not None:
        caps.append(usd(float(limits["daily_usd"])))
    if limits.get("daily_tokens") is not None:
        caps.append(plural(int(limits["daily_tokens"]), "token"))
    if limits.get("daily_runs") is not None:
        caps.append(plural(int(limits["daily_runs"]), "run"))
    if caps:
        lines.append(f"  daily limit: {', '.join(caps)} a day (local calendar day)")
    else:
        lines.append("  daily limit: off ([limits] in the config caps what this device spends)")
    if limit.get("reached"):
        lines.append(
            f"DAILY LIMIT: {printable(limit['reached'])} — no new runs are claimed; "
            "`device-agent resume --past-limit` goes on today"
        )
    elif limit.get("past_limit"):
        lines.append("  past the daily limit on purpose until the day turns (00:00)")
    return lines


def _worker(report: dict[str, Any]) -> str:
    return f" as worker {report['worker_id']}" if report["worker_id"] else ""
