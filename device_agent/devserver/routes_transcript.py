"""`POST /lobu/worker/transcript/snapshot`: a device uploads the transcript of an automation run.

See docs/protocol.md, "Transcript of an automation run". Read from the upstream source,
not seen on a running server: the answers' words marked "inferred" are ours.

The caller is the run's `agent_session` token, never a device token. The body is
`{runId, terminalStatus, snapshotJsonl}`; each snapshot of a run must extend the one
stored before it byte for byte, and replaces it.
"""

from __future__ import annotations

from typing import Any, Final

from device_agent.devserver.http import Request, Response
from device_agent.devserver.state import DevState
from device_agent.devserver.wire import error, json_object

TRANSCRIPT_ROUTE: Final = "/lobu/worker/transcript/snapshot"
TERMINAL_STATUSES: Final = ("completed", "failed", "timeout", "cancelled")
MAX_SNAPSHOT_BYTES: Final = 4 * 1024 * 1024


def snapshot(state: DevState, request: Request) -> Response:
    """Store a run's transcript (the caller holds the state lock)."""
    header = (request.header("authorization") or "").strip()
    scheme, _, value = header.partition(" ")
    token = state.live_token(value.strip()) if scheme.lower() == "bearer" else None
    if token is None:
        return error(401, "Invalid token")
    if token.session_run_id is None:  # a device token, or any other not bound to a run
        return error(400, "Token missing required scope")
    body = json_object(request)
    if body is None:
        return error(400, "Invalid JSON body")
    status = body.get("terminalStatus")
    if status not in TERMINAL_STATUSES:
        return error(400, "Invalid terminalStatus")
    jsonl = body.get("snapshotJsonl")
    if not isinstance(jsonl, str) or not jsonl:
        return error(400, "Missing snapshotJsonl")
    if len(jsonl.encode("utf-8")) > MAX_SNAPSHOT_BYTES:
        return error(413, "Snapshot too large")  # inferred
    run_id: Any = body.get("runId")
    if run_id != token.session_run_id or isinstance(run_id, bool):
        return error(403, "Token is not bound to this run")  # inferred
    stored = state.transcript(run_id)
    if stored is not None and not jsonl.startswith(stored.snapshot_jsonl):
        return error(409, "Snapshot does not extend the stored transcript")  # inferred
    return Response.json(200, {"id": state.store_transcript(run_id, str(status), jsonl)})
