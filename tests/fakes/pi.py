"""Fake `pi -p` (pi-coding-agent 0.73.1), print mode, text output.

Success: the assistant's text on stdout, exit 0. Failures as the real CLI
prints them: a message on stderr and exit 1 — no API key (seen on the real
CLI with an empty HOME), or a model error ending the turn (`stopReason:
"error"` prints its errorMessage). An unknown thinking level is only a
warning, as on the real CLI.

`--mode json` prints the JSON event stream instead (pi 0.73 docs/json.md): the session
header, then agent, turn and message events; each assistant `message_end` carries its
`usage` with `cost.total` in US dollars. Print mode (text) says nothing of cost.

FAKE_MODE: success | no_api_key | model_error
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


def main():
    args = sys.argv[1:]
    if args in (["--version"], ["-v"]):
        print("0.73.1")
        return 0
    if "-p" not in args and "--print" not in args:
        print("fake pi: only print mode (-p) is faked", file=sys.stderr)
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
    mode = os.environ.get("FAKE_MODE", "success")
    if mode == "no_api_key":
        sys.stderr.write(NO_API_KEY)
        return 1
    if mode == "model_error":
        message = "429 rate_limit_error: Number of request tokens has exceeded your rate limit"
        print(message, file=sys.stderr)
        return 1
    first_line = prompt.strip().splitlines()[0] if prompt.strip() else ""
    if option(args, "--mode") == "json":
        json_events(f"Pi did: {first_line}")
        return 0
    print(f"Pi did: {first_line}")
    return 0


def json_events(text):
    usage = {
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
    message = {
        "role": "assistant",
        "content": [{"type": "text", "text": text}],
        "api": "anthropic-messages",
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "usage": usage,
        "stopReason": "stop",
        "timestamp": 1733234567890,
    }
    for event in (
        {
            "type": "session",
            "version": 3,
            "id": "5f0c",
            "timestamp": "2026-11-27T09:00:00Z",
            "cwd": os.getcwd(),
        },
        {"type": "agent_start"},
        {"type": "turn_start"},
        {"type": "message_start", "message": {**message, "content": []}},
        {"type": "message_end", "message": message},
        {"type": "turn_end", "message": message, "toolResults": []},
        {"type": "agent_end", "messages": [message]},
    ):
        print(json.dumps(event))


if __name__ == "__main__":
    sys.exit(main())
