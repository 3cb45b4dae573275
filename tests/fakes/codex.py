"""Fake `codex exec --json ... -` (codex-cli 0.171): JSON-lines events on stdout, logs on stderr.

MCP servers come from `-c mcp_servers.<name>.<key>=<TOML value>` overrides, the
bearer token from the variable `bearer_token_env_var` names. As the real `codex
exec` does (tests/realcli shows it), it runs with approval policy "never": a call
to an MCP tool whose `tools.<tool>.approval_mode` is not "approve" is refused
("MCP tool call requires approval, but approval policy is never") and never
reaches the server. With a `lobu` server and a prompt holding an automation
window's completion contract, it calls `run_sdk` (completeWindow), as the model would.

FAKE_MODE: success (with a non-fatal "Reconnecting" error event on the way) |
no_final | turn_failed | error_last
"""

import json
import os
import re
import sys
import tomllib
import urllib.request

from _report import report

RUN_ID = re.compile(r"completeWindow\(\{ run_id: (\d+),")
REFUSED = "MCP tool call requires approval, but approval policy is never"


def overrides(args):
    """The -c key=value overrides, values read as TOML (a bare word is a string)."""
    config = {}
    for index, arg in enumerate(args[:-1]):
        if arg != "-c":
            continue
        key, _, raw = args[index + 1].partition("=")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return config


def call_tool(server, tool, arguments):
    """An MCP item for this tool call: refused unless approved, else made on the server."""
    item = {"type": "mcp_tool_call", "server": "lobu", "tool": tool, "arguments": arguments}
    if server.get("tools", {}).get(tool, {}).get("approval_mode") != "approve":
        return {**item, "status": "failed", "error": {"message": REFUSED}}
    token = os.environ.get(server.get("bearer_token_env_var", ""), "")
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
    call["params"] = {"name": tool, "arguments": arguments}
    request = urllib.request.Request(  # noqa: S310 - the dev server on loopback
        server["url"],
        data=json.dumps(call).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        rpc = json.loads(answer.read())
    # As the real CLI shows it: the tool's content, not the JSON-RPC envelope.
    result = {"content": rpc["result"]["content"], "structured_content": None}
    return {**item, "status": "completed", "result": result, "error": None}


def emit(**event):
    print(json.dumps(event), flush=True)


def main():
    args = sys.argv[1:]
    if args[:1] != ["exec"] or "--json" not in args or args[-1] != "-":
        print("fake codex: expected exec --json ... -", file=sys.stderr)
        return 2
    prompt = sys.stdin.read()
    lobu = overrides(args).get("mcp_servers", {}).get("lobu")
    report(prompt=prompt, mcp_server=lobu)
    mode = os.environ.get("FAKE_MODE", "success")
    print("2026-11-27T09:21:26Z WARN codex_core: starting", file=sys.stderr)
    emit(type="thread.started", thread_id="01a21c4f-4520-7881-8612-8af118f7b615")
    emit(type="turn.started")
    emit(type="item.completed", item={"id": "item_0", "type": "reasoning", "text": "thinking"})
    if mode == "turn_failed":
        emit(type="error", message="Reconnecting... 5/5 (stream disconnected)")
        emit(type="turn.failed", error={"message": "stream disconnected before completion"})
        return 1
    if mode == "error_last":
        emit(type="error", message="unexpected status 401 Unauthorized: Missing bearer")
        return 1
    run_id = RUN_ID.search(prompt)
    if run_id and lobu and lobu.get("url"):
        complete = {
            "method": "automations.completeWindow",
            "params": {"run_id": int(run_id.group(1)), "extracted_data": {"summary": "ok"}},
        }
        emit(type="item.completed", item={"id": "item_9", **call_tool(lobu, "run_sdk", complete)})
    emit(
        type="item.completed",
        item={
            "id": "item_1",
            "type": "command_execution",
            "command": "ls",
            "aggregated_output": "a b",
            "exit_code": 0,
            "status": "completed",
        },
    )
    if mode == "success":
        emit(type="error", message="Reconnecting... 1/5 (stream disconnected)")
        emit(
            type="item.completed",
            item={"id": "item_2", "type": "agent_message", "text": "Codex wrote the digest."},
        )
    emit(
        type="turn.completed",
        usage={"input_tokens": 2400, "cached_input_tokens": 100, "output_tokens": 180},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
