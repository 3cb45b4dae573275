"""Fake `pi -p --mode json` (pi-coding-agent 0.73.1): JSON-lines events on stdout.

Shaped as the real 0.73.1 prints them (tests/realcli drives it): the session header,
then every event of the run — `message_start`/`message_end` with whole messages,
`message_update` repeating the message so far with each streamed piece of it,
`tool_execution_*`, `turn_*`, `agent_*`. Success: it runs `ls` with its bash tool,
then answers "Pi did: <first line of the prompt>", exit 0. Failures as the real CLI
has them in this mode: no API key (seen with an empty HOME) is the header, a message
on stderr and exit 1; a model error ends the last assistant message with
`stopReason: "error"` and its `errorMessage`, exit 0. An unknown thinking level is only
a warning, as on the real CLI.

Each assistant `message_end` carries that message's `usage` as pi 0.73 prints it (its
docs/json.md): `input`, `output`, `cacheRead`, `cacheWrite`, `totalTokens` and `cost` in
US dollars (`cost.total`); a run's cost is the sum over its assistant messages (here two,
the tool call and the answer). A failed message's usage is all zeros.

FAKE_MODE: success | no_api_key | model_error | long (an answer of FAKE_LONG_CHARS
characters, default 20000, streamed a few characters at a time)
"""

import json
import os
import sys

from _report import option, report

NO_API_KEY = (
    "No API key found for the selected model.\n"
    "\n"
    "Use /login to log into a provider via OAuth or API key. See:\n"
    "  /usr/lib/node_modules/@mariozechner/pi-coding-agent/docs/providers.md\n"
    "  /usr/lib/node_modules/@mariozechner/pi-coding-agent/docs/models.md\n"
)
LEVELS = ("off", "minimal", "low", "medium", "high", "xhigh")
SESSION = "01a25341-6a85-703f-82ed-7d09f42546a7"
USAGE = {
    "input": 420,
    "output": 64,
    "cacheRead": 2000,
    "cacheWrite": 0,
    "totalTokens": 2484,
    "cost": {
        "input": 0.00126,
        "output": 0.00096,
        "cacheRead": 0.0006,
        "cacheWrite": 0,
        "total": 0.00282,
    },
}
NOTHING = {
    "input": 0,
    "output": 0,
    "cacheRead": 0,
    "cacheWrite": 0,
    "totalTokens": 0,
    "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0},
}


def emit(kind, **fields):
    sys.stdout.write(json.dumps({"type": kind, **fields}, separators=(",", ":")) + "\n")


def assistant(content, **extra):
    return {
        "role": "assistant",
        "content": content,
        "api": "openai-completions",
        "provider": "stub",
        "model": "stub-model",
        "usage": USAGE,
        "stopReason": "stop",
        "timestamp": 1796693125955,
        **extra,
    }


def streamed(text, step):
    """The assistant's answer as pi streams it: every delta repeats the message so far."""
    emit("message_start", message=assistant([]))
    for end in range(step, len(text) + step, step):
        partial = assistant([{"type": "text", "text": text[:end]}])
        event = {"type": "text_delta", "contentIndex": 0, "delta": text[end - step : end]}
        emit("message_update", assistantMessageEvent={**event, "partial": partial}, message=partial)
    message = assistant([{"type": "text", "text": text}])
    emit("message_end", message=message)
    return message


def main():
    args = sys.argv[1:]
    if args in (["--version"], ["-v"]):
        print("0.73.1")
        return 0
    if option(args, "--mode") != "json":
        print("fake pi: only --mode json is faked", file=sys.stderr)
        return 2
    thinking = option(args, "--thinking")
    if thinking is not None and thinking not in LEVELS:
        print(
            f'Warning: Invalid thinking level "{thinking}". Valid values: {", ".join(LEVELS)}',
            file=sys.stderr,
        )
    # pi reads piped stdin as the message; positional words would be appended.
    prompt = sys.stdin.read()
    report(prompt=prompt)
    emit("session", version=3, id=SESSION, timestamp="2026-12-08T01:25:25.766Z", cwd=os.getcwd())
    mode = os.environ.get("FAKE_MODE", "success")
    if mode == "no_api_key":
        sys.stdout.flush()
        sys.stderr.write(NO_API_KEY)
        return 1
    emit("agent_start")
    emit("turn_start")
    user = {"role": "user", "content": [{"type": "text", "text": prompt}]}
    emit("message_start", message=user)
    emit("message_end", message=user)
    if mode == "model_error":
        message = "429 rate_limit_error: Number of request tokens has exceeded your rate limit"
        failed = assistant([], stopReason="error", errorMessage=message, usage=NOTHING)
        emit("message_start", message=failed)
        emit("message_end", message=failed)
        emit("agent_end", messages=[user, failed])
        return 0
    if mode == "long":
        size = int(os.environ.get("FAKE_LONG_CHARS", "20000"))
        final = streamed("".join(chr(ord("a") + i % 26) for i in range(size)), 8)
        emit("turn_end", message=final, toolResults=[])
        emit("agent_end", messages=[user, final])
        return 0
    call = {"type": "toolCall", "id": "call_stub1", "name": "bash", "arguments": {"command": "ls"}}
    asked = assistant([call], stopReason="toolUse")
    emit("message_start", message=asked)
    emit("message_end", message=asked)
    emit("tool_execution_start", toolCallId="call_stub1", toolName="bash", args=call["arguments"])
    emit("tool_execution_update", toolCallId="call_stub1", toolName="bash", args=call["arguments"])
    output = {"content": [{"type": "text", "text": "README.md\n"}]}
    emit("tool_execution_end", toolCallId="call_stub1", toolName="bash", result=output)
    result = {"role": "toolResult", "toolCallId": "call_stub1", "toolName": "bash", **output}
    result["isError"] = False
    emit("message_start", message=result)
    emit("message_end", message=result)
    emit("turn_end", message=asked, toolResults=[result])
    emit("turn_start")
    first_line = prompt.strip().splitlines()[0] if prompt.strip() else ""
    final = streamed(f"Pi did: {first_line}", 5)
    emit("turn_end", message=final, toolResults=[])
    emit("agent_end", messages=[user, asked, result, final])
    return 0


if __name__ == "__main__":
    sys.exit(main())
