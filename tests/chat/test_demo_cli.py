"""The chat-lane demo agent answers the current user message of a real chat prompt, offline."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from device_agent.lanes.chat.payload import parse_chat_turn
from device_agent.lanes.chat.prompt import build_chat_prompt

from .claims import claim


def demo(prompt: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "device_agent.demo.chat_cli"],
        input=prompt,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},  # no network, no session: it needs neither
        check=False,
        timeout=30,
    )
    return done.returncode, json.loads(done.stdout)


def test_it_answers_the_current_message_and_counts_the_history_it_was_shown() -> None:
    status, result = demo(build_chat_prompt(parse_chat_turn(claim())))
    assert (status, result["is_error"]) == (0, False)
    assert result["result"].startswith(
        'Researcher here, answering "What changed today?" from this device. '
        "I was shown 2 earlier messages of the conversation."
    )


def test_a_first_turn_has_no_earlier_messages() -> None:
    prompt = build_chat_prompt(parse_chat_turn(claim({"chat.history": []})))
    assert "I was shown 0 earlier messages" in demo(prompt)[1]["result"]
