"""The complete-automation answer table (protocol §10.4), its bounds, and the exit-report body."""

from __future__ import annotations

from typing import Any

import pytest

from device_agent.agent.result import ExitReason, Report
from device_agent.lanes.automation.answers import (
    DEFAULT_NUDGE,
    MAX_ROUNDS,
    Cancelled,
    Completed,
    Failed,
    Final,
    GiveUp,
    Resume,
    exit_report_body,
    interrupted_round_body,
    local_failure_body,
    read_answer,
)
from device_agent.server.protocol import PayloadError

BUDGET_ERROR = (
    "Device CLI exited without calling completeWindow after 2 attempt(s). "
    "The automation must finalize its window."
)


# ------------------------------------------------------------ the answer table


@pytest.mark.parametrize(
    ("body", "decision"),
    [
        ({"ok": True, "status": "failed"}, Failed(error=None)),
        (
            {"ok": True, "status": "cancelled", "reason_code": "device_daemon_shutdown"},
            Cancelled(reason_code="device_daemon_shutdown"),
        ),
        ({"ok": True, "status": "completed"}, Completed()),
        ({"ok": True, "status": "completed", "idempotent": True}, Completed(idempotent=True)),
        (
            {"ok": True, "status": "failed", "idempotent": True},
            Failed(error=None, idempotent=True),
        ),
        (
            {"ok": True, "status": "cancelled", "idempotent": True},
            Cancelled(idempotent=True),
        ),
        ({"ok": True, "status": "timeout", "idempotent": True}, Final("timeout", idempotent=True)),
        (
            {"ok": True, "status": "completed", "reason_code": "event_turn"},
            Completed(reason_code="event_turn"),
        ),
        (
            {
                "ok": True,
                "status": "failed",
                "reason_code": "missing_complete_window",
                "error": BUDGET_ERROR,
            },
            Failed(error=BUDGET_ERROR, reason_code="missing_complete_window"),
        ),
        ({"ok": True, "status": "archived"}, Final("archived")),
    ],
)
def test_each_terminal_row_is_read(body: dict[str, Any], decision: object) -> None:
    assert read_answer(body, finalize_attempt=0) == decision


def test_resume_asks_for_the_next_round_with_the_nudge() -> None:
    body = {
        "ok": True,
        "status": "resume",
        "reason_code": "missing_complete_window",
        "attempt": 1,
        "max_attempts": 1,
        "nudge": "Call completeWindow with run_id 812 now.",
        "error": "Device CLI exited without calling completeWindow",
    }
    assert read_answer(body, finalize_attempt=0) == Resume(
        attempt=1,
        max_attempts=1,
        nudge="Call completeWindow with run_id 812 now.",
        error="Device CLI exited without calling completeWindow",
    )


def test_an_idempotent_resume_replay_continues_the_round_it_asks_for() -> None:
    # We re-sent round 0's report (e.g. after a restart); the server repeats its answer.
    body = {"ok": True, "status": "resume", "attempt": 1, "max_attempts": 3, "nudge": "n"}
    decision = read_answer({**body, "idempotent": True}, finalize_attempt=0)
    assert decision == Resume(attempt=1, max_attempts=3, nudge="n", idempotent=True)


@pytest.mark.parametrize(
    ("extra", "nudge"),
    [
        ({"nudge": "N", "error": "E"}, "N"),
        ({"error": "E"}, "E"),
        ({}, DEFAULT_NUDGE),
    ],
)
def test_the_nudge_falls_back_to_the_error_then_a_stock_text(
    extra: dict[str, Any], nudge: str
) -> None:
    body = {"status": "resume", "attempt": 1, **extra}
    decision = read_answer(body, finalize_attempt=0)
    assert isinstance(decision, Resume)
    assert decision.nudge == nudge


def test_a_resume_without_attempt_means_the_next_round() -> None:
    decision = read_answer({"status": "resume"}, finalize_attempt=2)
    assert isinstance(decision, Resume)
    assert decision.attempt == 3


# ---------------------------------------------------------------- bounds


@pytest.mark.parametrize(("attempt", "sent"), [(1, 1), (0, 1), (2, 5)])
def test_a_resume_that_does_not_move_forward_gives_up(attempt: int, sent: int) -> None:
    decision = read_answer({"status": "resume", "attempt": attempt}, finalize_attempt=sent)
    assert isinstance(decision, GiveUp)
    assert "no round runs twice" in decision.error


def test_the_local_cap_is_eight_rounds() -> None:
    last_allowed = read_answer({"status": "resume", "attempt": MAX_ROUNDS - 1}, finalize_attempt=6)
    assert isinstance(last_allowed, Resume)
    beyond = read_answer({"status": "resume", "attempt": MAX_ROUNDS}, finalize_attempt=7)
    assert beyond == GiveUp("device finalize resume loop exceeded local safety cap (8)")


def test_a_resume_beyond_the_servers_own_max_attempts_gives_up() -> None:
    decision = read_answer(
        {"status": "resume", "attempt": 3, "max_attempts": 2}, finalize_attempt=2
    )
    assert isinstance(decision, GiveUp)
    assert "max_attempts (2)" in decision.error


@pytest.mark.parametrize("attempt", ["2", 1.5, None, True])
def test_a_resume_with_an_unusable_attempt_gives_up(attempt: object) -> None:
    decision = read_answer({"status": "resume", "attempt": attempt}, finalize_attempt=0)
    assert isinstance(decision, GiveUp)


def test_a_server_that_always_says_resume_cannot_loop_forever() -> None:
    """Drive the loop the pipeline will run: each round reports the attempt it was asked for."""
    finalize_attempt, rounds = 0, 1
    while True:
        answer = {"status": "resume", "attempt": finalize_attempt + 1, "max_attempts": 99}
        decision = read_answer(answer, finalize_attempt=finalize_attempt)
        if not isinstance(decision, Resume):
            break
        finalize_attempt, rounds = decision.attempt, rounds + 1
    assert isinstance(decision, GiveUp)
    assert rounds == MAX_ROUNDS


@pytest.mark.parametrize("body", [None, [], "ok", {"ok": True}, {"status": ""}, {"status": 3}])
def test_an_answer_without_a_status_is_a_payload_error(body: object) -> None:
    with pytest.raises(PayloadError, match="complete-automation answer"):
        read_answer(body, finalize_attempt=0)


# ----------------------------------------------------------- report bodies


def result(**changes: Any) -> Report:
    fields: dict[str, Any] = {
        "output": "done",
        "error": None,
        "exit_code": 0,
        "exit_signal": None,
        "exit_reason": "ok",
        "duration_ms": 1234,
    }
    fields.update(changes)
    fields["exit_reason"] = ExitReason(fields["exit_reason"])
    return Report(**fields)


def test_a_clean_round_reports_its_exit_and_attempt() -> None:
    assert exit_report_body(result(), worker_id="headless:box", finalize_attempt=0) == {
        "worker_id": "headless:box",
        "output": "done",
        "error": None,
        "duration_ms": 1234,
        "exit_code": 0,
        "exit_signal": None,
        "exit_reason": "ok",
        "finalize_attempt": 0,
    }


def test_output_is_the_last_2000_characters() -> None:
    body = exit_report_body(
        result(output="x" * 5000 + "THE END"), worker_id="w", finalize_attempt=2
    )
    assert len(body["output"]) == 2000
    assert body["output"].endswith("THE END")
    assert body["finalize_attempt"] == 2


def test_empty_output_is_left_out() -> None:
    assert "output" not in exit_report_body(result(output=""), worker_id="w", finalize_attempt=0)


def test_a_failed_round_reports_the_last_500_characters_of_its_error() -> None:
    error = "claude exited with status 1: " + "e" * 600 + " Credit balance is too low"
    body = exit_report_body(
        result(error=error, exit_code=1, exit_reason="error_message"),
        worker_id="w",
        finalize_attempt=0,
    )
    assert len(body["error"]) == 500
    assert body["error"].endswith("Credit balance is too low")
    assert body["exit_reason"] == "error_message"
    assert body["exit_code"] == 1


def test_a_failure_without_a_message_still_reports_an_error() -> None:
    body = exit_report_body(
        result(exit_reason="timeout", exit_code=None, exit_signal="SIGTERM"),
        worker_id="w",
        finalize_attempt=0,
    )
    assert body["error"] == "the CLI ended with timeout"


def test_nul_and_lone_surrogates_are_replaced_in_text_fields() -> None:
    body = exit_report_body(
        result(output="a\x00b\ud800", error="bad\x00\udfff", exit_reason="error_message"),
        worker_id="w",
        finalize_attempt=0,
    )
    assert body["output"] == "a\ufffdb\ufffd"
    assert body["error"] == "bad\ufffd\ufffd"


def test_a_cli_stopped_after_heartbeat_409_reports_ok_with_the_signal() -> None:
    stopped = result(
        output="partial",
        error="run cancelled: the server no longer has this run in progress",
        exit_code=-15,
        exit_signal="SIGTERM",
        exit_reason="cancelled",
    )
    body = exit_report_body(
        stopped, worker_id="w", finalize_attempt=1, stopped="heartbeat_409", stop_signal="SIGKILL"
    )
    assert body["exit_reason"] == "ok"
    assert body["error"] is None
    assert body["exit_signal"] == "SIGKILL"
    assert body["exit_code"] is None
    assert body["finalize_attempt"] == 1
    assert body["output"] == "partial"


def test_a_cli_that_exited_by_itself_within_the_grace_keeps_its_real_exit() -> None:
    # The pipeline passes stopped=None when the CLI was not stopped by us.
    body = exit_report_body(
        result(exit_code=2, exit_reason="error_message", error="boom"),
        worker_id="w",
        finalize_attempt=0,
    )
    assert (body["exit_reason"], body["exit_code"], body["error"]) == ("error_message", 2, "boom")


def test_shutdown_is_reported_cancelled_without_error() -> None:
    body = exit_report_body(
        result(error="run cancelled: device agent stopping", exit_reason="cancelled"),
        worker_id="w",
        finalize_attempt=0,
        stopped="shutdown",
        stop_signal="SIGTERM",
    )
    assert body["exit_reason"] == "cancelled"
    assert body["error"] is None
    assert body["exit_signal"] == "SIGTERM"


def test_a_round_that_never_ran_is_reported_as_a_local_failure() -> None:
    body = local_failure_body(
        "no local agent executor configured for agent_kind='agy'",
        worker_id="w",
        finalize_attempt=3,
    )
    assert body == {
        "worker_id": "w",
        "error": "no local agent executor configured for agent_kind='agy'",
        "duration_ms": 0,
        "exit_code": None,
        "exit_signal": None,
        "exit_reason": "error_message",
        "finalize_attempt": 3,
    }


def test_a_round_cut_short_by_a_restart_is_reported_as_a_crash_once_not_rerun() -> None:
    body = interrupted_round_body(worker_id="w", finalize_attempt=2)
    assert body["exit_reason"] == "crash"
    assert body["finalize_attempt"] == 2
    assert body["error"].startswith("the device agent stopped while round 2 of this run")
    assert "not run again" in body["error"]
