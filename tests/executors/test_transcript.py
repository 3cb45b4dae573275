"""A run's transcript: read from each CLI's own stream (fakes printing the real CLIs' shapes),
written as the upstream JSONL, one round after another."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from device_agent.executors.readers import Usage
from device_agent.executors.transcript import (
    LIMIT,
    TRUNCATED,
    VALUE_CAP,
    Round,
    Text,
    ToolResult,
    ToolUse,
    Transcript,
    read_round,
)
from device_agent.redaction import Redactor
from tests.executors.conftest import TOKEN, Bench

NUDGE = "\n\n---\nFINALIZE NUDGE (prior attempt did not complete the window):\nDo it now.\n"
T0 = 1_796_693_100.0  # 2026-12-08T01:25:00.000Z


def parsed(jsonl: str) -> list[dict[str, Any]]:
    assert jsonl.endswith("\n")
    return [json.loads(line) for line in jsonl.splitlines()]


def sent_size(value: Any) -> int:
    """Bytes of `value` as JSON in a request's body (httpx writes UTF-8, not \\u escapes)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def shape(jsonl: str) -> list[tuple[str, ...]]:
    """Each message as (role, block type[, tool name])."""
    shown = []
    for entry in parsed(jsonl)[1:]:
        message = entry["message"]
        block = message["content"][0]
        extra = (block["name"],) if block["type"] == "tool_use" else ()
        shown.append((message["role"], block["type"], *extra))
    return shown


# ------------------------------------------------------------------ the JSONL itself


def test_one_round_is_the_upstream_jsonl_byte_for_byte() -> None:
    transcript = Transcript()
    transcript.add(
        Round(
            prompt="Summarise the inbox.",
            steps=(
                Text("Reading it."),
                ToolUse("toolu_1", "mcp__lobu__query_sdk", {"method": "knowledge.read"}),
                ToolResult("toolu_1", '{"items": []}'),
                Text("Nothing new."),
            ),
            usage=Usage(tokens_in=300, tokens_out=60),
            session_id="ses-1",
            cwd="/home/u/repo",
            started_at=T0,
            finished_at=T0 + 1.5,
        )
    )
    assert transcript.jsonl() == (
        '{"type":"session","version":3,"id":"ses-1","timestamp":"2026-12-08T01:25:00.000Z",'
        '"cwd":"/home/u/repo"}\n'
        '{"type":"message","id":"acp-1","parentId":null,"timestamp":"2026-12-08T01:25:00.000Z",'
        '"message":{"role":"user","content":[{"type":"text","text":"Summarise the inbox."}]}}\n'
        '{"type":"message","id":"acp-2","parentId":"acp-1","timestamp":"2026-12-08T01:25:01.500Z",'
        '"message":{"role":"assistant","content":[{"type":"text","text":"Reading it."}]}}\n'
        '{"type":"message","id":"acp-3","parentId":"acp-2","timestamp":"2026-12-08T01:25:01.500Z",'
        '"message":{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1",'
        '"name":"mcp__lobu__query_sdk","input":{"method":"knowledge.read"}}]}}\n'
        '{"type":"message","id":"acp-4","parentId":"acp-3","timestamp":"2026-12-08T01:25:01.500Z",'
        '"message":{"role":"toolResult","content":[{"type":"tool_result","tool_use_id":"toolu_1",'
        '"is_error":false,"content":[{"type":"text","text":"{\\"items\\": []}"}]}]}}\n'
        '{"type":"message","id":"acp-5","parentId":"acp-4","timestamp":"2026-12-08T01:25:01.500Z",'
        '"message":{"role":"assistant","content":[{"type":"text","text":"Nothing new."}],'
        '"usage":{"inputTokens":300,"outputTokens":60}}}\n'
    )


def test_a_second_round_extends_the_first_byte_for_byte() -> None:
    transcript = Transcript()
    first = Round("Do the work.", (Text("Summary only."),), None, "ses-1", "/w", T0, T0 + 1)
    transcript.add(first)
    one = transcript.jsonl()
    second = Round(
        "Do the work." + NUDGE,
        (Text("Done."),),
        Usage(tokens_in=1, tokens_out=2),
        "ses-2",
        "/x",
        T0 + 5,
    )
    transcript.add(dataclasses_replace(second, finished_at=T0 + 6))
    two = transcript.jsonl()
    assert two.startswith(one)
    entries = parsed(two)
    assert entries[0] == parsed(one)[0]  # the header is fixed once written: ses-1, /w
    assert [e["id"] for e in entries[1:]] == ["acp-1", "acp-2", "acp-3", "acp-4"]
    assert [e["parentId"] for e in entries[1:]] == [None, "acp-1", "acp-2", "acp-3"]
    assert entries[3]["message"]["content"][0]["text"].endswith("Do it now.\n")  # nudge kept
    assert entries[4]["message"]["usage"] == {"inputTokens": 1, "outputTokens": 2}
    assert transcript.rounds == 2


def dataclasses_replace(round_: Round, **changes: Any) -> Round:
    return dataclasses.replace(round_, **changes)


def test_usage_goes_on_the_last_assistant_text_of_the_round() -> None:
    transcript = Transcript()
    steps = (
        Text("first"),
        ToolUse("t", "x", {}),
        ToolResult("t", "ok"),
        Text("last"),
        ToolUse("u", "y", {}),
    )
    transcript.add(
        Round("p", steps, Usage(tokens_in=5, tokens_out=6), started_at=T0, finished_at=T0)
    )
    usages = [e["message"].get("usage") for e in parsed(transcript.jsonl())[1:]]
    assert usages == [None, None, None, None, {"inputTokens": 5, "outputTokens": 6}, None]


def test_a_round_without_a_session_of_its_own_is_named_by_the_fallback() -> None:
    transcript = Transcript(fallback_id="device-agent-run-7")
    transcript.add(Round("p", started_at=T0))
    assert parsed(transcript.jsonl())[0]["id"] == "device-agent-run-7"


# ------------------------------------------------------------------ cleaning


def test_secrets_token_shapes_and_nul_are_gone_from_every_value() -> None:
    redactor = Redactor()
    redactor.add(TOKEN)
    transcript = Transcript(redact=redactor)
    steps = (
        Text(f"I was given {TOKEN}\x00."),
        ToolUse("t1", "bash", {"command": "curl -H 'Authorization: Bearer abcdefgh12345678'"}),
        ToolUse("t2", "login", {"token": "ZZZZ9999zzzz", "nested": [{"device_token": "qqqqwwww"}]}),
        ToolResult("t2", "owl_pat_abcdefghijkl and \ud800 half a pair"),
    )
    transcript.add(Round(f"prompt {TOKEN}", steps, started_at=T0, finished_at=T0))
    jsonl = transcript.jsonl()
    for secret in (TOKEN, "abcdefgh12345678", "ZZZZ9999zzzz", "qqqqwwww", "owl_pat_abcdefghijkl"):
        assert secret not in jsonl
    assert "\\u0000" not in jsonl
    assert "I was given [REDACTED]." in jsonl
    entries = parsed(jsonl)
    assert entries[4]["message"]["content"][0]["input"] == {
        "token": "[REDACTED]",
        "nested": [{"device_token": "[REDACTED]"}],
    }
    assert "\ufffd half a pair" in jsonl
    jsonl.encode("utf-8")  # every character can be sent


def test_thinking_is_left_out() -> None:
    stream = "\n".join(
        json.dumps(event)
        for event in (
            {"type": "assistant", "message": {"content": [{"type": "thinking", "thinking": "hm"}]}},
            {"type": "assistant", "message": {"content": [{"type": "text", "text": "Hi."}]}},
        )
    )
    round_ = read_round(
        "claude-code", stream, prompt="p", answer="Hi.", cwd="", started_at=0, finished_at=0
    )
    assert round_.steps == (Text("Hi."),)
    codex = json.dumps(
        {"type": "item.completed", "item": {"id": "i", "type": "reasoning", "text": "hm"}}
    )
    assert (
        read_round("codex", codex, prompt="p", answer="", cwd="", started_at=0, finished_at=0).steps
        == ()
    )


# ------------------------------------------------------------------ sizes


def test_a_value_over_64_kib_is_cut_to_65536_characters_and_marked() -> None:
    transcript = Transcript()
    big_text = "a" * 100_000
    big_input = {"content": "b" * 70_000}
    steps = (ToolUse("t", "write", big_input), ToolResult("t", big_text), Text("c" * VALUE_CAP))
    transcript.add(Round("p", steps, started_at=T0, finished_at=T0))
    entries = parsed(transcript.jsonl())
    written_input = entries[2]["message"]["content"][0]["input"]
    assert written_input == json.dumps(big_input, separators=(",", ":"))[:VALUE_CAP] + TRUNCATED
    result = entries[3]["message"]["content"][0]["content"][0]["text"]
    assert result == "a" * VALUE_CAP + TRUNCATED
    # 65,536 characters exactly: cutting it there would cut nothing.
    assert entries[4]["message"]["content"][0]["text"] == "c" * VALUE_CAP


def test_the_whole_stays_under_4_mib_cutting_the_largest_values_first() -> None:
    transcript = Transcript()
    prompt = "p" * 60_000
    steps: list[Any] = [Text("short answer")]
    for number in range(80):  # 80 tool results of 60,000 characters: 4.8 MB
        steps += [
            ToolUse(f"t{number}", "read", {"n": number}),
            ToolResult(f"t{number}", "r" * (60_000 - number)),
        ]
    transcript.add(Round(prompt, tuple(steps), started_at=T0, finished_at=T0))
    jsonl = transcript.jsonl()
    assert (
        len(json.dumps({"runId": 1, "terminalStatus": "completed", "snapshotJsonl": jsonl}))
        <= LIMIT
    )
    entries = parsed(jsonl)
    assert entries[1]["message"]["content"][0]["text"] == prompt  # never the prompt
    assert entries[2]["message"]["content"][0]["text"] == "short answer"
    results = [
        e["message"]["content"][0]["content"][0]["text"]
        for e in entries[1:]
        if e["message"]["role"] == "toolResult"
    ]
    assert len(results) == 80  # every entry is there; the largest values were cut
    cut = [text for text in results if text.endswith(TRUNCATED)]
    assert cut
    assert all(
        len(text) == 60_000 - n for n, text in enumerate(results) if not text.endswith(TRUNCATED)
    )
    # The largest first: every one cut was at least as long as every one kept whole.
    whole = [60_000 - n for n, text in enumerate(results) if not text.endswith(TRUNCATED)]
    cut_from = [60_000 - n for n, text in enumerate(results) if text.endswith(TRUNCATED)]
    assert min(cut_from) >= max(whole)


def test_a_round_that_does_not_fit_leaves_the_rounds_before_it_as_they_were() -> None:
    transcript = Transcript(limit=200_000)
    transcript.add(Round("first", (ToolResult("a", "x" * 50_000),), started_at=T0, finished_at=T0))
    one = transcript.jsonl()
    many = tuple(ToolResult(f"t{n}", "y" * 1000) for n in range(400))  # far past the limit
    transcript.add(Round("second" + NUDGE, many, started_at=T0, finished_at=T0))
    two = transcript.jsonl()
    assert two.startswith(one)
    assert sent_size(two) <= 200_000
    assert parsed(two)[3]["message"]["content"][0]["text"] == "second" + NUDGE
    assert transcript.rounds == 2


# ------------------------------------------------------------------ each CLI's own stream

# Each fake prints its CLI's stream as the real CLI does: (fake, profile, the messages the
# transcript shows after the prompt, the usage of the round).
SHAPES = [
    (
        "claude",
        "claude-code",
        [
            ("assistant", "text"),
            ("assistant", "tool_use", "Read"),
            ("toolResult", "tool_result"),
            ("assistant", "text"),
        ],
        {"inputTokens": 6500, "outputTokens": 340},
    ),
    (
        "codex",
        "codex",
        [("assistant", "tool_use", "shell"), ("toolResult", "tool_result"), ("assistant", "text")],
        {"inputTokens": 2400, "outputTokens": 180},
    ),
    # Gemini's written tokens are its total less what it read: thinking and tool-use prompts
    # are counted in the total only (readers.gemini_usage).
    ("gemini", "gemini", [("assistant", "text")], {"inputTokens": 900, "outputTokens": 190}),
    (
        "opencode",
        "opencode",
        [
            ("assistant", "text"),
            ("assistant", "tool_use", "read"),
            ("toolResult", "tool_result"),
            ("assistant", "text"),
        ],
        {"inputTokens": 2210, "outputTokens": 55},  # reasoning counted as written
    ),
    (
        "pi",
        "pi",
        [("assistant", "tool_use", "bash"), ("toolResult", "tool_result"), ("assistant", "text")],
        {"inputTokens": 4840, "outputTokens": 128},
    ),
]


@pytest.mark.parametrize(("fake", "profile", "messages", "usage"), SHAPES)
def test_one_round_of_each_cli(
    bench: Bench, fake: str, profile: str, messages: list[tuple[str, ...]], usage: dict[str, int]
) -> None:
    bench.install(fake)
    report = bench.run(profile)
    assert report.error is None
    assert report.transcript is not None
    transcript = Transcript()
    transcript.add(report.transcript)
    jsonl = transcript.jsonl()
    assert shape(jsonl) == [("user", "text"), *messages]
    entries = parsed(jsonl)
    assert entries[1]["message"]["content"][0]["text"].startswith("Summarize what changed.")
    last_text = [e for e in entries[1:] if e["message"]["role"] == "assistant"][-1]
    assert last_text["message"]["content"][0]["text"] == report.output
    assert last_text["message"]["usage"] == usage
    # The tokens the journal counts for the round (and the daily limit adds up).
    counted = report.details["usage"]
    assert usage == {"inputTokens": counted["tokens_in"], "outputTokens": counted["tokens_out"]}
    assert entries[0]["id"]  # the CLI's own session id


@pytest.mark.parametrize(("fake", "profile", "messages", "usage"), SHAPES)
def test_two_rounds_of_each_cli_extend_byte_for_byte(
    bench: Bench, fake: str, profile: str, messages: list[tuple[str, ...]], usage: dict[str, int]
) -> None:
    bench.install(fake)
    transcript = Transcript()
    first = bench.run(profile)
    assert first.transcript is not None
    transcript.add(first.transcript)
    one = transcript.jsonl()
    second = bench.run(profile, prompt="Summarize what changed." + NUDGE)
    assert second.transcript is not None
    transcript.add(second.transcript)
    two = transcript.jsonl()
    assert two.startswith(one)
    assert shape(two) == [("user", "text"), *messages] * 2
    prompts = [
        e["message"]["content"][0]["text"]
        for e in parsed(two)[1:]
        if e["message"]["role"] == "user"
    ]
    assert prompts[1].endswith("Do it now.\n")  # the nudge, as sent


def test_a_command_without_a_stream_gets_its_prompt_and_output(bench: Bench) -> None:
    bench.install("echo_prompt", "my-agent")
    bench.profile("mine", 'argv = ["my-agent"]\n')
    report = bench.run("mine")
    assert report.transcript is not None
    transcript = Transcript()
    transcript.add(report.transcript)
    assert shape(transcript.jsonl()) == [("user", "text"), ("assistant", "text")]
    assert parsed(transcript.jsonl())[2]["message"]["content"][0]["text"] == report.output


def test_the_runs_own_secrets_never_reach_the_round(bench: Bench) -> None:
    bench.install("claude")
    report = bench.run("claude-code", prompt=f"Summarize what changed. {TOKEN}")
    assert report.transcript is not None
    assert TOKEN not in repr(report.transcript)


# Lines as the real CLIs printed them against tests/realcli's model stubs (a Lobu tool call
# and its result), each read into the same two steps.
REAL_TOOL_CALLS = [
    (
        "claude-code",
        [
            '{"type":"assistant","message":{"id":"msg_stub2","type":"message","role":"assistant",'
            '"model":"claude-opus-5-5","content":[{"type":"tool_use","id":"toolu_stub2",'
            '"name":"mcp__lobu__query_sdk","input":{"method":"knowledge.read","params":'
            '{"automation_id":"1"}}}],"stop_reason":null,"stop_sequence":null,"usage":'
            '{"input_tokens":100,"output_tokens":20},"context_management":null},'
            '"parent_tool_use_id":null,"session_id":"ea30f171"}',
            '{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_stub2",'
            '"type":"tool_result","content":[{"type":"text","text":"{\\"items\\": []}"}]}]},'
            '"parent_tool_use_id":null,"session_id":"ea30f171","tool_use_result":'
            '[{"type":"text","text":"{\\"items\\": []}"}]}',
        ],
        ("toolu_stub2", "mcp__lobu__query_sdk"),
    ),
    (
        "codex",
        [
            '{"type":"item.started","item":{"id":"item_1","type":"mcp_tool_call","server":"lobu",'
            '"tool":"query_sdk","arguments":{"method":"knowledge.read","params":'
            '{"automation_id":"1"}},"result":null,"error":null,"status":"in_progress"}}',
            '{"type":"item.completed","item":{"id":"item_1","type":"mcp_tool_call",'
            '"server":"lobu","tool":"query_sdk","arguments":{"method":"knowledge.read",'
            '"params":{"automation_id":"1"}},"result":{"content":[{"type":"text",'
            '"text":"{\\"items\\": []}"}],"structured_content":null},"error":null,'
            '"status":"completed"}}',
        ],
        ("item_1", "mcp__lobu__query_sdk"),
    ),
    (
        "gemini",
        [
            '{"type":"tool_use","timestamp":"2026-12-08T01:25:01.400Z","tool_name":'
            '"mcp_lobu_query_sdk","tool_id":"mcp_lobu_query_sdk_1796693101353_0","parameters":'
            '{"method":"knowledge.read","params":{"automation_id":"1"}}}',
            '{"type":"tool_result","timestamp":"2026-12-08T01:25:01.447Z","tool_id":'
            '"mcp_lobu_query_sdk_1796693101353_0","status":"success",'
            '"output":"{\\"items\\": []}"}',
        ],
        ("mcp_lobu_query_sdk_1796693101353_0", "mcp_lobu_query_sdk"),
    ),
    (
        "opencode",
        [
            '{"type":"tool_use","timestamp":1796693113530,"sessionID":"ses_dacbed","part":'
            '{"type":"tool","tool":"lobu_query_sdk","callID":"call_stub2","state":{"status":'
            '"completed","input":{"method":"knowledge.read","params":{"automation_id":"1"}},'
            '"output":"{\\"items\\": []}","metadata":{"truncated":false},"title":"","time":'
            '{"start":1796693113254,"end":1796693113310}},"id":"prt_2534","sessionID":'
            '"ses_dacbed","messageID":"msg_2534"}}',
        ],
        ("call_stub2", "lobu_query_sdk"),
    ),
    (
        "pi",
        [
            '{"type":"message_end","message":{"role":"assistant","content":[{"type":"toolCall",'
            '"id":"call_stub1","name":"query_sdk","arguments":{"method":"knowledge.read",'
            '"params":{"automation_id":"1"}}}],"stopReason":"toolUse"}}',
            '{"type":"message_end","message":{"role":"toolResult","toolCallId":"call_stub1",'
            '"toolName":"query_sdk","content":[{"type":"text","text":"{\\"items\\": []}"}],'
            '"isError":false,"timestamp":1796693126209}}',
        ],
        ("call_stub1", "query_sdk"),
    ),
]


@pytest.mark.parametrize(("shape_", "lines", "call"), REAL_TOOL_CALLS)
def test_a_tool_call_and_its_result_as_each_real_cli_prints_them(
    shape_: str, lines: list[str], call: tuple[str, str]
) -> None:
    round_ = read_round(
        shape_, "\n".join(lines), prompt="p", answer="", cwd="", started_at=0, finished_at=0
    )
    ident, name = call
    arguments = {"method": "knowledge.read", "params": {"automation_id": "1"}}
    assert round_.steps == (ToolUse(ident, name, arguments), ToolResult(ident, '{"items": []}'))
