"""Poll answers that claim a run, shaped like a current Lobu server's (docs/protocol.md,
"Poll and claim"), for each lane, and the `Claim` the agent parses from them.

Change any field with a dotted path: "watcher.name" is payload.watcher.name; "run_id",
"run_type", "organization_id" and "payload" are the answer's own; the value DELETE removes
the field.

    watcher_answer({"watcher.agent_kind": None})      # the JSON the server sends
    automation_claim({"automation.name": "Nightly"})  # what parse_poll makes of it

`journal_claim` records a watcher run's claim in a journal, as the pipeline does before
the run's CLI starts; `OK` is a successful run's report.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from device_agent.agent.journal import Journal
from device_agent.agent.result import ExitReason, Report
from device_agent.server.protocol import Claim, parse_poll

SESSION_TOKEN = "owl_pat_SessionTokenForThisRunOnly000001"
MCP_URL = "http://127.0.0.1:8787/mcp/acme"
DELETE: Final[Any] = object()
_TOP_LEVEL: Final = frozenset({"run_id", "run_type", "organization_id", "payload"})

WATCHER_ANSWER: dict[str, Any] = {
    "run_id": 4711,
    "run_type": "watcher",
    "organization_id": "org_1",
    "payload": {
        "watcher": {
            "id": "123",
            "name": "Inbox digest",
            "slug": "inbox-digest",
            "agent_kind": "claude-code",
            "notification_channel": "both",
            "notification_priority": "high",
            "execution_config": {"timeout_seconds": 120, "model": "m1"},
            "prompt": "Summarise my inbox.",
        },
        "event": {
            "trigger_event_id": None,
            "fired_at": "2026-11-27T09:00:00Z",
            "payload": {
                "watcher_id": 123,
                "window_start": "2026-11-27T08:00:00.000Z",
                "window_end": "2026-11-27T09:00:00.000Z",
                "dispatch_source": "scheduled",
                "agent_kind": "claude-code",
                "kind": "digest",
            },
        },
        "context": {"device": {"worker_id": "uuid-1"}, "user": {"user_id": "u1"}},
    },
}

APPROVED_INPUT: dict[str, Any] = {
    "agent_id": "agent_7",
    "window_start": "2026-11-29T00:00:00.000Z",
    "window_end": "2026-11-30T00:00:00.000Z",
    "dispatch_source": "scheduled",
    "version_id": 3,
    "device_worker_id": "5d0c6f8e-8c1e-4a52-9d1e-0f3f7c1b2a10",
    "agent_kind": "claude-code",
    "finalize_nudge_count": 0,
}

AUTOMATION_ANSWER: dict[str, Any] = {
    "run_id": 812,
    "run_type": "automation",
    "organization_id": "org_1",
    "payload": {
        "automation": {
            "id": "42",
            "name": "Inbox triage",
            "slug": "inbox-triage",
            "agent_kind": "claude-code",
            "execution_config": {"timeout_seconds": 900, "model": "sonnet"},
            "prompt": "  Sort the new mail.\n",
            "extraction_schema": None,
        },
        "event": {
            "trigger_event_id": None,
            "fired_at": "2026-11-30T07:00:00.000Z",
            "payload": APPROVED_INPUT,
        },
        "context": {
            "device": {"worker_id": "5d0c6f8e-8c1e-4a52-9d1e-0f3f7c1b2a10"},
            "user": {"user_id": "user_9"},
            "agent_session": {
                "conversation_id": "conv_1",
                "mcp_url": MCP_URL,
                "token": SESSION_TOKEN,
                "expires_at": "2026-11-30T09:00:00.000Z",
            },
        },
    },
}


def watcher_answer(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """A watcher run's poll answer (a copy of WATCHER_ANSWER) with `changes`."""
    return changed(WATCHER_ANSWER, changes)


def automation_answer(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """An automation run's poll answer (a copy of AUTOMATION_ANSWER) with `changes`."""
    return changed(AUTOMATION_ANSWER, changes)


def watcher_claim(changes: dict[str, Any] | None = None) -> Claim:
    return claim_of(watcher_answer(changes))


def automation_claim(changes: dict[str, Any] | None = None) -> Claim:
    return claim_of(automation_answer(changes))


def changed(answer: dict[str, Any], changes: dict[str, Any] | None) -> dict[str, Any]:
    """A deep copy of `answer` with `changes` applied (dotted paths, see the module)."""
    body = copy.deepcopy(answer)
    for dotted, value in (changes or {}).items():
        *parents, key = dotted.split(".")
        target = body if (parents or [key])[0] in _TOP_LEVEL else body["payload"]
        for parent in parents:
            target = target[parent]
        if value is DELETE:
            del target[key]
        else:
            target[key] = value
    return body


def claim_of(answer: dict[str, Any]) -> Claim:
    """The `Claim` the agent parses from a poll answer that hands over a run."""
    parsed = parse_poll(answer)
    assert isinstance(parsed, Claim), parsed
    return parsed


JOURNAL_SERVER: Final = "http://127.0.0.1:1"
# The runs table of the first journals: before outputs moved to a table of their own,
# before incremental vacuum and the columns added since (a journal to convert).
OLD_RUNS_TABLE: Final = (
    "CREATE TABLE runs (server TEXT NOT NULL, run_id INTEGER NOT NULL, run_type TEXT NOT NULL,"
    " state TEXT NOT NULL, watcher_id TEXT, watcher_name TEXT, agent_kind TEXT,"
    " payload_digest TEXT, claimed_at REAL NOT NULL, finished_at REAL, acked_at REAL,"
    " output TEXT, error TEXT, exit_code INTEGER, exit_signal TEXT, exit_reason TEXT,"
    " duration_ms INTEGER, details TEXT, attempts INTEGER NOT NULL DEFAULT 0, answer TEXT,"
    " server_message TEXT, PRIMARY KEY (server, run_id))"
)
OK: Final = Report(
    output="out",
    error=None,
    duration_ms=5,
    exit_code=0,
    exit_signal=None,
    exit_reason=ExitReason.OK,
)


def journal_claim(journal: Journal, run_id: int, *, server: str = JOURNAL_SERVER) -> bool:
    """Record watcher run `run_id` as claimed; False if the journal had it already."""
    return journal.record_claim(
        server,
        run_id,
        run_type="watcher",
        watcher_id="1",
        watcher_name="w",
        agent_kind="demo",
        payload_digest="d",
    )
