"""Output readers: pure functions of what a CLI printed."""

from __future__ import annotations

import json

from device_agent.executors.readers import (
    Captured,
    FileReader,
    JsonlReader,
    JsonReader,
    TextReader,
    dig,
    last_json_object,
)

CLAUDE = JsonReader(
    text="result",
    failed_if=("is_error",),
    error=("result", "errors", "subtype"),
    details={"cost_usd": "total_cost_usd"},
)
GEMINI = JsonReader(text="response", failed_if=("error",), error=("error.message",), stderr=True)
CODEX = JsonlReader(
    final={"type": "item.completed", "item.type": "agent_message"},
    text="item.text",
    failure_types=("turn.failed", "error"),
    error=("error.message", "message"),
    details={"session_id": ("thread.started", "thread_id")},
)


def lines(*events: object) -> str:
    return "\n".join(json.dumps(event) for event in events) + "\n"


def test_dig() -> None:
    obj = {"a": {"b": [{"c": 1}, {"c": 2}]}}
    assert dig(obj, "a.b.1.c") == 2
    assert dig(obj, "a.x.c") is None
    assert dig(obj, "a.b.7") is None


def test_last_json_object_tolerates_log_lines_and_prefixes() -> None:
    assert last_json_object('{"a": 1}') == {"a": 1}
    assert last_json_object('Loaded cached credentials.\n[ERROR] {\n  "error": {"m": 1}\n}\n') == {
        "error": {"m": 1}
    }
    assert last_json_object('warning: x\n{"first": 1}\n{"second": 2}\ntrailer') == {"second": 2}
    assert last_json_object("[1, 2]") is None
    assert last_json_object("no json here {") is None
    assert last_json_object("") is None


def test_json_reader_success_and_details() -> None:
    reading = CLAUDE.read(Captured('{"result": "done", "is_error": false, "total_cost_usd": 0.5}'))
    assert (reading.output, reading.error, reading.problem) == ("done", None, None)
    assert reading.details == {"cost_usd": 0.5}


def test_json_reader_failure_message_falls_back_in_order() -> None:
    errors_only = '{"is_error": true, "subtype": "error_max_turns", "errors": ["too many turns"]}'
    assert CLAUDE.read(Captured(errors_only)).error == "too many turns"
    bare = '{"is_error": true, "subtype": "error_during_execution"}'
    assert CLAUDE.read(Captured(bare)).error == "error_during_execution"
    nothing = '{"is_error": true}'
    assert CLAUDE.read(Captured(nothing)).error == "the CLI reported a failure (is_error=true)"


def test_json_reader_reads_stderr_only_when_told() -> None:
    captured = Captured("", stderr='{"error": {"message": "quota"}}')
    assert GEMINI.read(captured).error == "quota"
    assert CLAUDE.read(captured).problem is not None


def test_json_reader_missing_text_field_is_a_problem() -> None:
    reading = CLAUDE.read(Captured('{"is_error": false, "answer": "x"}'))
    assert reading.problem == "the JSON object has no 'result' field (it has: answer, is_error)"


def test_json_reader_unparseable_shows_the_tail() -> None:
    reading = CLAUDE.read(Captured("x" * 1000 + "Segmentation fault"))
    assert reading.problem is not None
    assert reading.problem.startswith(
        "expected a JSON object on stdout but found none; last output: …"
    )
    assert reading.problem.endswith("Segmentation fault")
    assert len(reading.problem) < 600


def test_jsonl_later_final_message_supersedes_a_retry_error() -> None:
    stream = lines(
        {"type": "thread.started", "thread_id": "t1"},
        {"type": "error", "message": "Reconnecting... 1/5"},
        {"type": "item.completed", "item": {"type": "agent_message", "text": "first"}},
        {"type": "item.completed", "item": {"type": "agent_message", "text": "final"}},
        {"type": "turn.completed", "usage": {"output_tokens": 1}},
    )
    reading = CODEX.read(Captured(stream))
    assert (reading.output, reading.error, reading.problem) == ("final", None, None)
    assert reading.details == {"session_id": "t1"}


def test_jsonl_failure_after_a_message_fails() -> None:
    stream = lines(
        {"type": "item.completed", "item": {"type": "agent_message", "text": "half"}},
        {"type": "turn.failed", "error": {"message": "context window exceeded"}},
    )
    assert CODEX.read(Captured(stream)).error == "context window exceeded"


def test_jsonl_without_final_message_or_json() -> None:
    no_final = CODEX.read(Captured(lines({"type": "turn.started"}), stderr="boom"))
    assert no_final.problem == (
        "the event stream ended without a final message (last event: 'turn.started'); "
        "last output: boom"
    )
    not_json = CODEX.read(Captured("Error: unknown flag --json\n"))
    assert not_json.problem == (
        "expected JSON lines on stdout but found none; last output: Error: unknown flag --json"
    )


def test_text_and_file_readers() -> None:
    assert TextReader().read(Captured("  hello\n")).output == "hello"
    assert FileReader().read(Captured("log", output_file="answer\n")).output == "answer"
    missing = FileReader().read(Captured("log line"))
    assert missing.problem == "the CLI did not write its output file; last output: log line"


def test_dig_spans_a_list_with_a_star() -> None:
    message = {"content": [{"type": "thinking"}, {"type": "text", "text": "a"}, {"text": "b"}]}
    assert dig(message, "content.*.text") == ["a", "b"]
    assert dig(message, "content.*") == message["content"]
    assert dig({"content": "not a list"}, "content.*.text") is None


CLAUDE_STREAM = JsonlReader(
    final={"type": "result"},
    text="result",
    failures=({"type": "result", "is_error": True},),
    error=("result", "errors", "subtype"),
)


def test_jsonl_failures_match_values_and_not_just_types() -> None:
    ok = lines({"type": "assistant"}, {"type": "result", "is_error": False, "result": "done"})
    assert (CLAUDE_STREAM.read(Captured(ok)).output, CLAUDE_STREAM.read(Captured(ok)).error) == (
        "done",
        None,
    )
    failed = lines({"type": "result", "is_error": True, "result": "Credit balance is too low"})
    reading = CLAUDE_STREAM.read(Captured(failed))
    assert reading.error == "Credit balance is too low"
    assert reading.output == "Credit balance is too low"  # the event's text is kept
    bare = CLAUDE_STREAM.read(Captured(lines({"type": "result", "is_error": True})))
    assert bare.error == 'the CLI reported a failure (type="result", is_error=true)'


def test_jsonl_a_match_of_true_is_not_a_match_of_one() -> None:
    stream = lines({"type": "result", "is_error": 1, "result": "fine"})
    assert CLAUDE_STREAM.read(Captured(stream)).error is None


def test_jsonl_join_puts_a_message_streamed_in_chunks_back_together() -> None:
    gemini = JsonlReader(
        final={"type": "message", "role": "assistant"},
        text="content",
        join="delta",
        failures=({"type": "result", "status": "error"},),
        error=("error.message",),
    )
    stream = lines(
        {"type": "message", "role": "user", "content": "prompt"},
        {"type": "message", "role": "assistant", "content": "Let me look.", "delta": True},
        {"type": "tool_use", "tool_name": "read"},
        {"type": "tool_result", "status": "success"},
        {"type": "message", "role": "assistant", "content": "Two new ", "delta": True},
        {"type": "message", "role": "assistant", "content": "items.", "delta": True},
        {"type": "result", "status": "success"},
    )
    assert gemini.read(Captured(stream)).output == "Two new items."
    failed = lines(
        {"type": "message", "role": "assistant", "content": "Let me", "delta": True},
        {"type": "result", "status": "error", "error": {"message": "[API Error: quota]"}},
    )
    assert gemini.read(Captured(failed)).error == "[API Error: quota]"


def test_jsonl_text_of_several_blocks_is_joined_by_line_breaks() -> None:
    pi = JsonlReader(final={"type": "message_end", "message.role": "assistant"}, text="x.*.text")
    stream = lines(
        {"type": "message_end", "message": {"role": "assistant"}, "x": [{"text": "a"}, {}]},
        {
            "type": "message_end",
            "message": {"role": "assistant"},
            "x": [{"text": "b"}, {"text": "c"}],
        },
    )
    assert pi.read(Captured(stream)).output == "b\nc"
