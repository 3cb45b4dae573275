"""A stand-in for Lobu's MCP server, just enough for a CLI to finish an automation window.

See docs/protocol.md, "Automation lane" and "Automation lane: exit report and
resume": a run's `agent_session` token reaches this endpoint, and a window
completed here is what lets the exit report settle the run as completed.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Final

from device_agent.devserver.http import Request, Response
from device_agent.devserver.state import DevState, McpCall
from device_agent.devserver.wire import Caller, error, json_object


def mcp(state: DevState, caller: Caller, request: Request, *, org_slug: str | None) -> Response:
    """A stand-in for Lobu's MCP server: just enough for a CLI to finish a window.

    JSON-RPC 2.0 over one POST, as MCP's Streamable HTTP transport carries it:
    a notification (a message without an `id`, such as
    `notifications/initialized`) or a client's response is accepted with 202
    and no body. `initialize`, `tools/list`, and `tools/call`
    of `run_sdk` with arguments `{"method": "automations.completeWindow",
    "params": {"run_id": N, "extracted_data": {...}}}` (the real `run_sdk`
    runs TypeScript against the SDK; the stand-in runs no code and takes the
    one call in this structured form) and `query_sdk` with
    `{"method": "knowledge.read", ...}` (answers no knowledge). A run's
    `agent_session` token may complete only that run.
    """
    if org_slug is not None and org_slug != state.org.slug:
        return error(404, f"Organization '{org_slug}' not found")
    if caller.token is not None and not caller.token.scopes & {"mcp:write", "mcp:admin"}:
        return error(403, "insufficient_scope", error_description="mcp:write is required")
    message = json_object(request)
    if message is None:
        return _rpc_error(None, -32700, "Parse error: expected one JSON-RPC request object")
    if "id" not in message:
        return Response(202)  # a notification or a response: accepted, nothing to answer
    rpc_id = message.get("id")
    method = message.get("method")
    params = message.get("params")
    params = params if isinstance(params, dict) else {}
    arguments = params.get("arguments")
    arguments = arguments if isinstance(arguments, dict) else {}
    tool = params.get("name") if method == "tools/call" else None
    state.log_mcp_call(
        McpCall(
            method=str(method),
            tool=tool if isinstance(tool, str) else None,
            arguments=copy.deepcopy(arguments) if method == "tools/call" else None,
            token=caller.token.token if caller.token else None,
        )
    )
    if method == "initialize":
        return _rpc_result(
            rpc_id,
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "lobu-devserver-mcp", "version": "0"},
            },
        )
    if method == "tools/list":
        return _rpc_result(rpc_id, {"tools": _TOOLS})
    if method != "tools/call":
        return _rpc_error(rpc_id, -32601, f"Method not found: {method!r}")
    outcome = _call_tool(state, caller, params.get("name"), arguments)
    is_error = isinstance(outcome, str)
    text = outcome if isinstance(outcome, str) else json.dumps(outcome)
    return _rpc_result(rpc_id, {"content": [{"type": "text", "text": text}], "isError": is_error})


_TOOLS: Final = [
    {
        "name": name,
        "description": f"{name} (dev server stand-in): arguments {{method, params}}",
        "inputSchema": {
            "type": "object",
            "properties": {"method": {"type": "string"}, "params": {"type": "object"}},
            "required": ["method"],
        },
    }
    for name in ("query_sdk", "run_sdk")
]


def _call_tool(
    state: DevState, caller: Caller, name: Any, arguments: dict[str, Any]
) -> dict[str, Any] | str:
    """The tool's result, or an error text the CLI can read."""
    method = arguments.get("method")
    params = arguments.get("params")
    params = params if isinstance(params, dict) else {}
    if "code" in arguments and method is None:
        return (
            "the dev server's MCP stand-in runs no code: call run_sdk with "
            '{"method": "automations.completeWindow", "params": {"run_id", "extracted_data"}}'
        )
    if name == "query_sdk" and method == "knowledge.read":
        return {"items": []}
    if name == "run_sdk" and method == "automations.completeWindow":
        return _complete_window(state, caller, params)
    return f"unsupported call {name!r} {method!r} on the dev server's MCP stand-in"


def _complete_window(
    state: DevState, caller: Caller, params: dict[str, Any]
) -> dict[str, Any] | str:
    run_id = params.get("run_id")
    if isinstance(run_id, str) and run_id.isdigit():
        run_id = int(run_id)
    if not isinstance(run_id, int) or isinstance(run_id, bool):
        return "completeWindow needs a numeric run_id"
    session_run = caller.token.session_run_id if caller.token else None
    if session_run is not None and session_run != run_id:
        return f"this agent session belongs to run {session_run}, not run {run_id}"
    run = state.find_run(run_id)
    if run is None or run.run_type != "automation":
        return f"Automation run {run_id} not found"
    if run.approved_input.get("trigger_execution") == "turn":
        return f"Run {run_id} is an event turn: it has no window to complete"
    if run.status != "running":
        return f"Run {run_id} is not running (status {run.status})"
    data = params.get("extracted_data")
    run.windows_completed.append(copy.deepcopy(data))
    run.extracted_data = data if isinstance(data, dict) else {"value": data}
    run.status = "completed"
    run.completed_at = state.now()
    return {"ok": True, "run_id": run_id, "window_start": run.approved_input.get("window_start")}


def not_allowed(state: DevState, caller: Caller, request: Request) -> Response:
    """A method other than POST on the MCP endpoint: 405, as a Streamable HTTP server
    that opens no server-initiated stream (GET) and keeps no session (DELETE) answers."""
    body = {"error": f"Method {request.method} not allowed on the MCP endpoint: use POST"}
    return Response.json(405, body, headers={"Allow": "POST"})


def _rpc_result(rpc_id: Any, result: dict[str, Any]) -> Response:
    return Response.json(200, {"jsonrpc": "2.0", "id": rpc_id, "result": result})


def _rpc_error(rpc_id: Any, code: int, message: str) -> Response:
    return Response.json(
        200, {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": code, "message": message}}
    )
