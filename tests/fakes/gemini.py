"""Fake `gemini --output-format stream-json` (Gemini CLI 0.61), headless because stdin is not
a TTY.

JSON-lines events on stdout, shaped as the real 0.61.0 prints them (tests/realcli
drives it): `init`, the user's `message`, `tool_use`/`tool_result` pairs, the
assistant's answer as `message` events in `delta` pieces, then `result` with
`status: "success"` and the token stats (`stream_stats`; Gemini states no cost),
exit 0. Failures: a missing auth method is a message on stderr and exit 41, before
any event (as the real CLI does in this mode); an API error inside the turn is a
`result` with `status: "error"`, `error: {type, message}` and the stats, exit 1.

Where it finds MCP servers, as the real 0.61.0 does (tests/realcli shows it):
- the system settings file (GEMINI_CLI_SYSTEM_SETTINGS_PATH) only when root owns
  it and every folder above it and none is writable by group or others; otherwise
  "Security Warning: Skipping system settings file ..." on stderr, and it is ignored;
- the user settings, `$GEMINI_CLI_HOME/.gemini/settings.json` (else under $HOME);
- the project's `.gemini/settings.json` only in a trusted folder: trust is decided
  before `--skip-trust` is read, so only GEMINI_CLI_TRUST_WORKSPACE=true (or folder
  trust turned off in the settings) counts. Untrusted without --skip-trust: exit 55.
Only servers named by --allowed-mcp-server-names are kept. With a `lobu` server and a
prompt holding an automation window's completion contract, it calls `run_sdk`
(completeWindow) on that server, as the model would.

FAKE_MODE: success | auth_error | api_error
"""

import json
import os
import re
import stat
import sys
import time
import urllib.request

from _report import file_facts, option, report

SESSION = "52bf10c2-376c-4a38-8ef6-79cb4be7b38d"
RUN_ID = re.compile(r"completeWindow\(\{ run_id: (\d+),")


def insecure(path):
    """Why Gemini CLI 0.61 would skip this system settings file (None: it reads it)."""
    current = os.path.abspath(path)
    while True:
        info = os.stat(current)
        if info.st_uid != 0:
            return f"'{current}' is not owned by root (uid 0). Current uid: {info.st_uid}"
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return f"'{current}' is writable by group or others"
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


class ConfigError(Exception):
    pass


def load(path):
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise ConfigError(f"Error in {path}: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"Error in {path}: Settings file is not a valid JSON object.")
    return value


def settings_files(args):
    """[(scope, path)] of the settings files Gemini reads, and the warnings it prints."""
    found, warnings = [], []
    system = os.environ.get("GEMINI_CLI_SYSTEM_SETTINGS_PATH")
    if system and os.path.exists(system):
        reason = insecure(system)
        if reason is None:
            found.append(("system", system))
        else:
            warnings.append(f"Security Warning: Skipping system settings file '{system}': {reason}")
    home = os.environ.get("GEMINI_CLI_HOME") or os.environ.get("HOME") or "/"
    user = os.path.join(home, ".gemini", "settings.json")
    if os.path.exists(user):
        found.append(("user", user))
    trusted = os.environ.get("GEMINI_CLI_TRUST_WORKSPACE") == "true" or any(
        load(path).get("security", {}).get("folderTrust", {}).get("enabled") is False
        for _, path in found
    )
    project = os.path.join(".gemini", "settings.json")
    if trusted and os.path.exists(project):
        found.append(("workspace", project))
    return found, warnings, trusted


def gemini_home():
    """The entries of the Gemini folder of $GEMINI_CLI_HOME: a link's target, else "file"."""
    home = os.environ.get("GEMINI_CLI_HOME")
    folder = os.path.join(home, ".gemini") if home else None
    if not folder or not os.path.isdir(folder):
        return None
    return {
        name: os.readlink(path) if os.path.islink(path) else "file"
        for name in sorted(os.listdir(folder))
        for path in [os.path.join(folder, name)]
    }


def complete_window(server, run_id):
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "run_sdk",
            "arguments": {
                "method": "automations.completeWindow",
                "params": {"run_id": run_id, "extracted_data": {"summary": "ok"}},
            },
        },
    }
    request = urllib.request.Request(  # noqa: S310 - the dev server on loopback
        server["httpUrl"],
        data=json.dumps(call).encode(),
        headers={**server.get("headers", {}), "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return json.loads(answer.read())


def stream_stats():
    """The `stats` of the `result` event, as Gemini CLI 0.61's StreamJsonFormatter makes them
    from its session metrics (convertToStreamStats): per model and summed, `total_tokens`,
    `input_tokens` (the prompt's, cached included), `output_tokens` (the answer's), `cached`
    and `input` (the prompt less the cached); thinking and tool-use prompt tokens are in the
    total only. No cost. Here: prompt 900 (100 cached), answer 120, thinking 40, tool 30."""
    model = {
        "total_tokens": 1090,
        "input_tokens": 900,
        "output_tokens": 120,
        "cached": 100,
        "input": 800,
    }
    return {**model, "duration_ms": 217, "tool_calls": 0, "models": {"gemini-2.5-pro": model}}


def emit(kind, **fields):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    print(json.dumps({"type": kind, "timestamp": stamp, **fields}), flush=True)


def main():
    args = sys.argv[1:]
    if option(args, "--output-format") != "stream-json":
        print("fake gemini: expected --output-format stream-json", file=sys.stderr)
        return 42
    prompt = sys.stdin.read()
    try:
        found, warnings, trusted = settings_files(args)
        loaded = [(scope, path, load(path)) for scope, path in found]
    except ConfigError as exc:
        report(prompt=prompt)
        print(f"{exc}\nPlease fix the configuration file(s) and try again.", file=sys.stderr)
        return 52
    for warning in warnings:
        print(warning, file=sys.stderr)
    if not trusted and "--skip-trust" not in args:
        print(
            "Gemini CLI is not running in a trusted directory. To proceed, either use "
            "`--skip-trust`, set the `GEMINI_CLI_TRUST_WORKSPACE=true` environment variable, "
            "or trust this directory in interactive mode.",
            file=sys.stderr,
        )
        return 55
    servers, origin = {}, None
    for scope, path, settings in loaded:
        for name, server in settings.get("mcpServers", {}).items():
            servers[name] = server
            if name == "lobu":
                origin = (scope, path)
    allowed = option(args, "--allowed-mcp-server-names")
    if allowed is not None:
        servers = {k: v for k, v in servers.items() if k in allowed.split(",")}
    report(
        prompt=prompt,
        settings=file_facts(origin[1]) if origin else None,
        settings_scope=origin[0] if origin else None,
        mcp_servers=sorted(servers),
        warnings=warnings,
        gemini_home=gemini_home(),
        project_settings=file_facts(os.path.join(".gemini", "settings.json")),
    )
    mode = os.environ.get("FAKE_MODE", "success")
    if mode == "auth_error":
        sys.stderr.write(
            "Please set an Auth method in your /home/u/.gemini/settings.json or specify one of "
            "the following environment variables before running: GEMINI_API_KEY, "
            "GOOGLE_GENAI_USE_VERTEXAI, GOOGLE_GENAI_USE_GCA\n"
        )
        return 41
    stats = stream_stats()
    emit("init", session_id=SESSION, model="gemini-2.5-pro")
    emit("message", role="user", content=prompt)
    if mode == "api_error":
        error = {"type": "ApiError", "message": "[API Error: quota exceeded]"}
        emit("result", status="error", error=error, stats=stats)
        return 1
    run_id = RUN_ID.search(prompt)
    if run_id and "lobu" in servers:
        tool_id = "mcp_lobu_run_sdk__mcp_lobu_run_sdk_1796693101460_0"
        arguments = {
            "method": "automations.completeWindow",
            "params": {"run_id": int(run_id.group(1)), "extracted_data": {"summary": "ok"}},
        }
        emit("tool_use", tool_name="mcp_lobu_run_sdk", tool_id=tool_id, parameters=arguments)
        answer = complete_window(servers["lobu"], int(run_id.group(1)))
        output = answer["result"]["content"][0]["text"]
        emit("tool_result", tool_id=tool_id, status="success", output=output)
        stats["tool_calls"] = 1
    first_line = prompt.strip().splitlines()[0]
    for piece in ("Gemini did: ", first_line):
        emit("message", role="assistant", content=piece, delta=True)
    emit("result", status="success", stats=stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
