"""`device-agent history`: recent runs from the journal, or one run in full, its transcript too.

The list reads no run's output (`output_bytes` says how much there is); `--run N`
reads that run's, one run at a time, and `--run N --transcript` what its CLI did.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from device_agent.agent import transcripts
from device_agent.agent.journal import Entry, Journal
from device_agent.agent.limits import count, usd
from device_agent.agent.transcripts import Kept
from device_agent.agent.usage import RunCost
from device_agent.cli.common import settings_from
from device_agent.cli.output import duration, fail, format_table, iso, printable, when
from device_agent.config import Settings
from device_agent.errors import ExitCode

ERROR_WIDTH = 60  # characters of the error in the table; `--run` shows all of it


def cmd_history(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    transcript = getattr(args, "transcript", False)
    if transcript and args.run_id is None:
        fail("--transcript shows one run's transcript: name the run, e.g. --run 42 --transcript")
        return ExitCode.CONFIG
    if not settings.paths.journal_file.exists():
        print("[]" if args.json else "no runs yet")
        return ExitCode.OK
    journal = Journal(settings.paths.journal_file)
    try:
        if args.run_id is not None and transcript:
            return _show_transcript(journal, settings, args.run_id, as_json_=args.json)
        if args.run_id is not None:
            return _show_run(journal, settings, args.run_id, as_json_=args.json)
        entries = journal.recent(args.limit)
        costs = journal.usage.of_runs((e.server, e.run_id) for e in entries)
    finally:
        journal.close()
    if args.json:
        listed = [as_json(e, costs.get((e.server, e.run_id)), with_output=False) for e in entries]
        print(json.dumps(listed, indent=2))
        return ExitCode.OK
    rows = [
        [
            str(e.run_id),
            printable(e.watcher_name or "-"),
            printable(e.agent_kind or "-"),
            outcome(e),
            duration(e.duration_ms),
            cost_text(costs.get((e.server, e.run_id))),
            tokens_text(costs.get((e.server, e.run_id))),
            when(e.claimed_at),
            _short(problem(e) or "-"),
        ]
        for e in entries
    ]
    header = ["run", "name", "executor", "state", "took", "cost", "tokens", "started", "error"]
    print(format_table(header, rows))
    return ExitCode.OK


def outcome(entry: Entry) -> str:
    """The journal state in a person's words."""
    failed = bool(entry.error)
    return {
        "claimed": "running",
        "finished": "failed, not sent yet" if failed else "done, not sent yet",
        "acknowledged": "failed" if failed else "succeeded",
        "dead": "refused by server",
        "abandoned": "dropped by server",
    }.get(entry.state, entry.state)


def problem(entry: Entry) -> str | None:
    """What went wrong: the run's own error, else why the server refused its report."""
    if entry.state in {"dead", "abandoned"} and entry.server_message:
        return f"server: {entry.server_message}"
    return entry.error


def as_json(
    entry: Entry, cost: RunCost | None = None, *, with_output: bool = True
) -> dict[str, Any]:
    data = entry.as_dict()
    if not with_output:  # a listed row has none: left out rather than shown as null
        del data["output"]
    for key in ("claimed_at", "finished_at", "acked_at"):
        data[key] = iso(data[key])
    data["details"] = dict(entry.details)
    # What its CLI reported it cost, over its rounds; None: no CLI was started.
    data["usage"] = cost.as_dict() if cost is not None else None
    return data


def cost_text(cost: RunCost | None) -> str:
    """What a run cost in the history table: "$0.04"; "?" when its CLI reports no cost
    ("$0.04+?" when some round's did not); "-" when no CLI was started."""
    if cost is None:
        return "-"
    if cost.cost_usd is None:
        return "?"
    return usd(cost.cost_usd) + ("+?" if cost.cost_partial else "")


def tokens_text(cost: RunCost | None) -> str:
    """Tokens in/out as the CLI counted them: "1.2k/340"; "?" when it counts none."""
    if cost is None:
        return "-"
    if cost.tokens_in is None and cost.tokens_out is None:
        return "?"
    return "/".join(count(n) if n is not None else "?" for n in (cost.tokens_in, cost.tokens_out))


def _short(text: str) -> str:
    line = printable(text, lines=True).replace("\n", " ")
    return line if len(line) <= ERROR_WIDTH else line[: ERROR_WIDTH - 1] + "…"


def _show_run(journal: Journal, settings: Settings, run_id: int, *, as_json_: bool) -> int:
    matches = journal.with_run_id(run_id)
    if not matches:
        fail(f"run {run_id} is not in the journal ({settings.paths.journal_file})")
        return ExitCode.CONFIG
    costs = journal.usage.of_runs((e.server, e.run_id) for e in matches)
    for entry in matches:
        cost = costs.get((entry.server, entry.run_id))
        kept = transcripts.kept(journal, entry.server, entry.run_id)
        if as_json_:
            shown = as_json(entry, cost) | {"transcript": _transcript_json(kept)}
            print(json.dumps(shown, indent=2))
            continue
        print(_details(entry, cost, kept))
    return ExitCode.OK


def _show_transcript(journal: Journal, settings: Settings, run_id: int, *, as_json_: bool) -> int:
    """The run's transcript: as kept (JSONL) with --json, else one message a paragraph."""
    if not journal.with_run_id(run_id):
        fail(f"run {run_id} is not in the journal ({settings.paths.journal_file})")
        return ExitCode.CONFIG
    found = transcripts.kept_for_run_id(journal, run_id)
    if not found:
        fail(
            f"run {run_id} has no transcript in the journal: it ran no CLI, or ran before "
            "device-agent kept transcripts"
        )
        return ExitCode.CONFIG
    for kept in found:
        print(kept.jsonl, end="") if as_json_ else print(_readable(kept))
    return ExitCode.OK


def _transcript_json(kept: Kept | None) -> dict[str, Any] | None:
    if kept is None:
        return None
    return {
        "rounds": kept.rounds,
        "entries": kept.entries,
        "bytes": len(kept.jsonl.encode("utf-8")),
        "upload": kept.upload,
    }


def _transcript_line(kept: Kept | None, entry: Entry) -> str:
    if kept is None:
        return "-"
    size = len(kept.jsonl.encode("utf-8"))
    rounds = f"{kept.rounds} round{'s' if kept.rounds != 1 else ''}"
    where = kept.upload or "kept on this device only"
    return (
        f"{rounds}, {kept.entries} messages, {size / 1024:.1f} KiB; {where} "
        f"(device-agent history --run {entry.run_id} --transcript)"
    )


def _readable(kept: Kept) -> str:
    """The transcript for a person: who said what, in order, each round under its prompt."""
    lines: list[str] = []
    round_number = 0
    for text in kept.jsonl.splitlines():
        try:
            item = json.loads(text)
        except ValueError:
            continue  # the journal keeps what was written; a line that is not JSON is skipped
        if item.get("type") == "session":
            lines.append(f"session {item.get('id')} in {item.get('cwd') or '-'}")
            continue
        message = item.get("message") or {}
        for block in message.get("content") or []:
            if message.get("role") == "user":
                round_number += 1
                lines += ["", f"──── round {round_number}, {item.get('timestamp')} ────"]
            lines.append(_said(message, block))
        usage = message.get("usage")
        if isinstance(usage, dict):
            lines.append(
                f"  (tokens: {usage.get('inputTokens')} in, {usage.get('outputTokens')} out)"
            )
    lines.append("")
    lines.append(f"upload: {kept.upload or 'none (kept on this device only)'}")
    return printable("\n".join(lines), lines=True)


def _said(message: dict[str, Any], block: dict[str, Any]) -> str:
    kind = block.get("type")
    if kind == "tool_use":
        return (
            f"tool call {block.get('name')}: {json.dumps(block.get('input'), ensure_ascii=False)}"
        )
    if kind == "tool_result":
        texts = [part.get("text", "") for part in block.get("content") or []]
        failed = " (error)" if block.get("is_error") else ""
        return f"tool result{failed}: " + "\n".join(texts)
    return f"{message.get('role')}: {block.get('text', '')}"


def _details(entry: Entry, cost: RunCost | None = None, kept: Kept | None = None) -> str:
    fields = [
        ("run", f"{entry.run_id} ({entry.run_type}) on {entry.server}"),
        ("name", f"{entry.watcher_name or '-'} (id {entry.watcher_id or '-'})"),
        ("executor", entry.agent_kind or "-"),
        ("state", outcome(entry)),
        ("error", problem(entry) or "-"),
        ("exit", _exit(entry)),
        ("started", when(entry.claimed_at)),
        ("finished", when(entry.finished_at)),
        ("took", duration(entry.duration_ms)),
        ("cost", _cost_words(cost)),
        ("tokens", _tokens_words(cost)),
        ("delivered", when(entry.acked_at) if entry.state == "acknowledged" else "-"),
        ("attempts", str(entry.attempts)),
        ("server said", entry.server_message or entry.answer or "-"),
        ("transcript", _transcript_line(kept, entry)),
    ]
    fields += [
        (key, value if isinstance(value, str) else json.dumps(value))
        for key, value in sorted(entry.details.items())
    ]
    width = max(len(label) for label, _ in fields)
    lines = [f"{label:>{width}}: {printable(value)}" for label, value in fields]
    lines += ["---- output ----", printable(entry.output or "(no output)", lines=True)]
    return "\n".join(lines)


def _cost_words(cost: RunCost | None) -> str:
    if cost is None:
        return "- (no CLI was started)"
    if cost.cost_usd is None:
        return "unknown (its CLI reports no cost)"
    rounds = f" over {cost.rounds} rounds" if cost.rounds > 1 else ""
    partial = " (partial: a round's cost is unknown)" if cost.cost_partial else ""
    return f"{usd(cost.cost_usd)}{rounds}{partial}"


def _tokens_words(cost: RunCost | None) -> str:
    if cost is None:
        return "-"
    if cost.tokens_in is None and cost.tokens_out is None:
        return "unknown (its CLI counts none)"
    shown = ("?" if n is None else f"{n:,}" for n in (cost.tokens_in, cost.tokens_out))
    return "{} in, {} out".format(*shown)


def _exit(entry: Entry) -> str:
    if entry.exit_signal:
        return f"signal {entry.exit_signal} ({entry.exit_reason or '-'})"
    if entry.exit_code is None:
        return entry.exit_reason or "-"
    return f"code {entry.exit_code} ({entry.exit_reason or '-'})"
