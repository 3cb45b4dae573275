"""Shared by the fakes: write what the fake saw to $FAKE_REPORT, for the test to inspect.

The test installs this file next to each fake it puts on PATH.
"""

import json
import os
import re
import stat
import sys
import time


def file_facts(path):
    """Mode of a file and of its directory, and its content as JSON (or text)."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        content = json.loads(text)
    except ValueError:
        content = text
    return {
        "path": os.path.abspath(path),
        "mode": oct(stat.S_IMODE(os.stat(path).st_mode)),
        "dir_mode": oct(stat.S_IMODE(os.stat(os.path.dirname(os.path.abspath(path))).st_mode)),
        "content": content,
    }


def report(**facts):
    path = os.environ.get("FAKE_REPORT")
    if not path:
        return
    facts.update(
        argv=sys.argv,
        env=dict(os.environ),
        cwd=os.getcwd(),
        cwd_files=_files_under(os.getcwd()),
        pid=os.getpid(),
        pgid=os.getpgid(0),
        sid=os.getsid(0),
    )
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(facts, handle)
    os.replace(path + ".tmp", path)  # the test may poll for the file: never show half of it


def _files_under(root, limit=200):
    """Every file under the CLI's working directory while it runs, with its text."""
    found = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            try:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    found[os.path.relpath(path, root)] = handle.read(1 << 20)
            except OSError:
                continue
            if len(found) >= limit:
                return found
    return found


def log_execution(prompt):
    """One record per invocation in $FAKE_CLI_LOG, so tests can count executions."""
    log_dir = os.environ.get("FAKE_CLI_LOG")
    if not log_dir:
        return
    final = os.path.join(log_dir, f"{time.time_ns()}-{os.getpid()}.json")
    with open(final + ".tmp", "w", encoding="utf-8") as handle:
        json.dump({"argv": sys.argv[1:], "prompt": prompt, "pid": os.getpid()}, handle)
    os.replace(final + ".tmp", final)  # readers never see half a record


def option(args, name, default=None):
    return args[args.index(name) + 1] if name in args else default


def allowed_tools(args):
    """The rules given to --allowedTools (or --allowed-tools): the values after the flag up to
    the next option, split at commas and spaces, as Claude Code reads them."""
    rules = []
    i = 0
    while i < len(args):
        if args[i] in ("--allowedTools", "--allowed-tools"):
            i += 1
            while i < len(args) and not args[i].startswith("-"):
                rules += [rule for rule in args[i].replace(",", " ").split() if rule]
                i += 1
        else:
            i += 1
    return rules


def tool_permitted(args, tool):
    """Claude Code's rule in print mode (-p): there is nobody to ask, so an MCP tool
    `mcp__<server>__<name>` runs only when --allowedTools names it or its whole server
    (`mcp__<server>`, `mcp__<server>__*`), or the permission checks are off; any other
    call is denied and lands in the result's `permission_denials`."""
    if option(args, "--permission-mode") == "bypassPermissions":
        return True
    if "--dangerously-skip-permissions" in args:
        return True
    server = "__".join(tool.split("__")[:2])
    return any(rule in (tool, server, f"{server}__*") for rule in allowed_tools(args))


def call_tool(server, name, arguments):
    """One MCP `tools/call` to a server of an MCP config (`url`, `headers`), as an MCP client
    sends it over streamable HTTP; the JSON-RPC answer."""
    import urllib.request

    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }
    request = urllib.request.Request(  # noqa: S310 - a loopback proxy or the dev server
        server["url"],
        data=json.dumps(call).encode(),
        headers={
            **server.get("headers", {}),
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        },
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    with opener.open(request, timeout=10) as answer:
        return json.loads(answer.read())


def claude_stream_refusal(args):
    """Claude Code's refusal of an argv the stream-json fakes cannot serve, as the real CLI
    words it (exit 1 without --verbose); None when the argv is one they serve."""
    if "-p" not in args or option(args, "--output-format") != "stream-json":
        print("error: this fake only knows -p --output-format stream-json", file=sys.stderr)
        return 2
    if "--verbose" not in args:
        print(
            "Error: When using --print, --output-format=stream-json requires --verbose",
            file=sys.stderr,
        )
        return 1
    return None


def claude_result_event(text, prompt, session_id, **extra):
    """The final `result` event of a Claude Code 2.1 stream, with what the run cost:
    [[cost=X]] in the prompt, else FAKE_COST_USD, else 0.0421 US dollars."""
    marked = re.search(r"\[\[cost=([0-9.]+)\]\]", prompt)
    cost = float(marked.group(1) if marked else os.environ.get("FAKE_COST_USD", "0.0421"))
    return {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": text,
        "num_turns": 2,
        "session_id": session_id,
        "total_cost_usd": cost,
        "usage": {
            "input_tokens": 900,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 4000,
            "output_tokens": 120,
        },
        **extra,
    }
