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


# ------------------------------------------------------- output cut at the cap (issue 27)

CAP = 4 * 1024 * 1024
CUT = "\n[output truncated]"  # what the executor puts after a stdout cut at the cap


def cut(text: str) -> Captured:
    return Captured(text + CUT, stdout_cut_at=CAP)


def test_a_json_answer_cut_inside_its_text_says_so_and_keeps_the_head() -> None:
    head = '{"type": "result", "subtype": "success", "is_error": false, "result": "'
    reading = CLAUDE.read(cut(head + "a" * 5000 + "\\n" + "b" * 100))
    assert reading.problem is not None
    assert "expected a JSON object" not in reading.problem
    assert reading.problem.startswith(
        "its JSON answer passed the 4 MiB output cap ([executor] stdout_cap_bytes) and was cut "
        "inside its 'result' field: the output is the first 5101 characters of it; raise "
        "[executor] stdout_cap_bytes"
    )
    assert reading.output == "a" * 5000 + "\n" + "b" * 100
    assert reading.error is None


def test_an_escape_cut_in_the_middle_is_left_out_of_the_head() -> None:
    for tail in ("\\", "\\u00", "\\u00e"):
        reading = CLAUDE.read(cut('{"is_error": false, "result": "caf' + tail))
        assert reading.output == "caf", tail
    assert CLAUDE.read(cut('{"result": "caf\\u00e9 \\ud83d')).output == "café \ud83d"


def test_a_json_answer_cut_after_its_text_is_read_whole() -> None:
    text = '{"is_error": false, "result": "done", "total_cost_usd": 0.5, "usage": {"input": 12'
    reading = CLAUDE.read(cut(text))
    assert (reading.output, reading.problem, reading.error) == ("done", None, None)
    assert reading.details == {"cost_usd": 0.5}


def test_a_failure_said_before_the_cut_is_the_runs_error() -> None:
    text = '{"is_error": true, "errors": ["rate limited"], "result": "partial answ'
    reading = CLAUDE.read(cut(text))
    assert reading.error == "partial answ"  # the CLI's own words, as far as they go
    assert reading.problem is None


def test_a_json_answer_cut_before_its_text_names_what_was_read() -> None:
    reading = CLAUDE.read(cut('{"is_error": false, "total_cost_usd": 0.5, "usage": {"a": [1, 2'))
    assert reading.problem is not None
    assert "was cut before its 'result' field (read: is_error, total_cost_usd, usage)" in (
        reading.problem
    )


def test_output_cut_before_any_json_object_says_so() -> None:
    reading = CLAUDE.read(cut("progress line\n" * 1000))
    assert reading.problem is not None
    assert reading.problem.startswith(
        "its JSON answer passed the 4 MiB output cap ([executor] stdout_cap_bytes) and was cut "
        "before a JSON object could be read"
    )
    assert reading.problem.endswith("progress line")  # the tail of what it printed


def test_a_whole_object_before_the_cut_is_read_as_usual() -> None:
    reading = CLAUDE.read(cut('{"is_error": false, "result": "ok"}\n' + "debug noise\n" * 100))
    assert (reading.output, reading.problem) == ("ok", None)


def test_gemini_cut_on_stdout_with_its_error_on_stderr_reports_the_error() -> None:
    captured = Captured(
        "Loaded cached credentials.\n" * 100 + CUT,
        stderr='{"error": {"message": "quota exceeded"}}',
        stdout_cut_at=CAP,
    )
    assert GEMINI.read(captured).error == "quota exceeded"


def test_a_cap_that_is_not_whole_mib_is_said_in_bytes() -> None:
    reading = CLAUDE.read(Captured('{"result": "ab' + CUT, stdout_cut_at=65536))
    assert reading.problem is not None
    assert "passed the 65536-byte output cap" in reading.problem


def test_a_stream_cut_at_the_cap_keeps_its_last_whole_message_and_says_so() -> None:
    stream = lines(
        {"type": "thread.started", "thread_id": "t1"},
        {"type": "item.completed", "item": {"type": "agent_message", "text": "first"}},
        {"type": "item.completed", "item": {"type": "command_execution"}},
    )
    reading = CODEX.read(cut(stream + '{"type": "item.completed", "item": {"type": "agent_mes'))
    assert reading.output == "first"
    assert reading.details == {"session_id": "t1"}
    assert reading.problem is not None
    assert reading.problem.startswith(
        "its output passed the 4 MiB output cap ([executor] stdout_cap_bytes) and was cut after "
        "3 whole JSON lines: the output is the last whole message before the cut, and a later "
        "one may be missing"
    )


def test_a_stream_cut_before_any_message_or_any_whole_line_says_so() -> None:
    started = CODEX.read(cut(lines({"type": "turn.started"}) + '{"type": "item.comp'))
    assert started.problem is not None
    assert "after 1 whole JSON line, none of them a final message (last event: 'turn.started')" in (
        started.problem
    )
    nothing = CODEX.read(cut('{"type": "item.completed", "item": {"text": "' + "x" * 1000))
    assert nothing.problem is not None
    assert "was cut before its first whole JSON line" in nothing.problem


def test_a_stream_that_failed_before_the_cut_reports_the_failure() -> None:
    stream = lines({"type": "turn.failed", "error": {"message": "context window exceeded"}})
    reading = CODEX.read(cut(stream + '{"type": "ite'))
    assert reading.error == "context window exceeded"


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


def test_a_stream_cut_after_a_failure_matched_by_value_reports_the_failure() -> None:
    stream = lines(
        {"type": "assistant"},
        {"type": "result", "is_error": True, "result": "Credit balance is too low"},
    )
    reading = CLAUDE_STREAM.read(cut(stream + '{"type": "ass'))
    assert reading.error == "Credit balance is too low"
    bare = CLAUDE_STREAM.read(cut(lines({"type": "result", "is_error": True}) + '{"ty'))
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
