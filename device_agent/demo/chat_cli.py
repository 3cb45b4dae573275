"""An offline stand-in for a CLI coding agent in the chat lane, for `device-agent demo`.

Run as `python -m device_agent.demo.chat_cli` (executors/demo-chat.toml). It
reads the chat prompt on stdin (docs/protocol.md, "Chat lane"), calls no
model and no network, and answers the current user message the way a real
agent would be asked to: the reply alone. It says how much of the
conversation it was shown, so the demo shows the history arriving. It prints
one result object shaped like Claude Code's `--output-format json`, so the
demo exercises the same reader as a real run.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from typing import Final

CURRENT_MESSAGE: Final = "## Current user message\n\n"
RECENT_CONVERSATION: Final = "## Recent conversation\n\n"
_AGENT: Final = re.compile(r"^You are executing one chat turn for the Lobu agent (.+)\.$", re.M)


def unquote(section: str) -> str:
    """The text between a section's fence lines (the first line opens, the last closes)."""
    lines = section.split("\n")
    return "\n".join(lines[1:-1]) if len(lines) >= 2 else section


def reply(prompt: str) -> str:
    """A short, plausible reply to the current user message."""
    agent = _AGENT.search(prompt)
    name = agent.group(1) if agent else "your agent"
    message = unquote(prompt.rsplit(CURRENT_MESSAGE, 1)[-1]).strip()
    earlier = 0
    if RECENT_CONVERSATION in prompt:
        transcript = unquote(prompt.split(RECENT_CONVERSATION, 1)[1].split("\n\n## ", 1)[0])
        earlier = len(re.findall(r"^(?:User|Assistant): ", transcript, re.M))
    said = " ".join(message.split())
    said = said if len(said) <= 80 else said[:79] + "…"
    seen = f"{earlier} earlier messages" if earlier != 1 else "1 earlier message"
    return (
        f'{name} here, answering "{said}" from this device. I was shown {seen} of the '
        "conversation. This reply comes from the bundled offline agent; no model was called."
    )


def main() -> int:
    prompt = sys.stdin.read()
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": reply(prompt),
        "total_cost_usd": 0,
        "num_turns": 1,
        "session_id": f"demo-{uuid.uuid4()}",
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
