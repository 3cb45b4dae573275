"""Issue 8, points 1-3 and 7: no server answer kills, hangs or bloats the client
(docs/protocol.md, "What a real server does")."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from device_agent.agent.backoff import Backoff
from device_agent.server.client import BODY_CAP, POLL_BODY_CAP, Answer, AnswerKind, LobuClient
from device_agent.server.http import HEAD_KEPT
from device_agent.server.protocol import Idle, parse_poll
from tests.support.servers import (
    HostileServer,
    Reply,
    huge,
    json_reply,
    nested_json,
    redirect,
    silent,
    trickle,
)

TOKEN = "owl_pat_" + "h" * 32
T = TypeVar("T")


def against(
    replies: list[Reply],
    fn: Callable[[LobuClient], Coroutine[Any, Any, T]],
    **client_options: float,
) -> tuple[T, HostileServer]:
    async def go() -> tuple[T, HostileServer]:
        async with HostileServer(replies) as server:
            async with LobuClient(server.url, lambda: TOKEN, **client_options) as client:
                # A deadline on the test itself: a hang fails, it does not stall the suite.
                result = await asyncio.wait_for(fn(client), timeout=120)
            return result, server

    return asyncio.run(go())


def poll(client: LobuClient) -> Coroutine[Any, Any, Answer]:
    return client.poll({"worker_id": "w1", "platform": "headless", "label": "box"})


def test_json_nested_a_hundred_thousand_deep_is_a_transient_answer() -> None:
    answer, _ = against([nested_json(100_000)], poll)
    assert answer.kind is AnswerKind.TRANSIENT
    assert "undecodable" in answer.message


def test_a_trickled_answer_is_given_up_at_the_overall_deadline() -> None:
    # A byte every 0.2 s never trips the per-read timeout of 1 s; the overall deadline
    # (read + connect: 1.5 s) ends it long before the 10 000 bytes are sent.
    body = b'{"next_poll_seconds": 10}' + b" " * 10_000
    replies = [trickle(body, interval=0.2)]
    answer, server = against(replies, poll, poll_timeout=1.0, connect_timeout=0.5)
    assert answer.kind is AnswerKind.TRANSIENT
    assert answer.timed_out
    assert server.sent[0].body_bytes < len(body)


def test_a_poll_not_held_times_out_after_poll_timeout() -> None:
    # No wait_seconds: the server is not asked to hold the poll, so nothing is added to
    # poll_timeout (a held poll gets wait_seconds + 10 s at least).
    async def timed_poll(client: LobuClient) -> tuple[Answer, float]:
        started = time.monotonic()
        answer = await poll(client)
        return answer, time.monotonic() - started

    (answer, seconds), _ = against([silent()], timed_poll, poll_timeout=1.0)
    assert answer.kind is AnswerKind.TRANSIENT
    assert answer.timed_out
    assert seconds < 5.0


def test_a_huge_streamed_answer_is_refused_at_the_cap_not_buffered_whole() -> None:
    size = 100 * 1024 * 1024
    answer, server = against([huge(size)], poll)
    assert answer.kind is AnswerKind.TRANSIENT
    assert f"over {POLL_BODY_CAP} bytes refused" in answer.message
    assert server.sent[0].body_bytes < size // 4  # the client stopped reading early


def test_a_huge_declared_answer_is_refused_at_its_first_bytes() -> None:
    async def heartbeat(client: LobuClient) -> Answer:
        return await client.heartbeat(run_id=1, worker_id="w1")

    answer, _ = against([huge(BODY_CAP * 4, declared=True)], heartbeat)
    assert answer.kind is AnswerKind.TRANSIENT
    assert f"the cap is {BODY_CAP}" in answer.message
    assert answer.refused_head == b"x" * HEAD_KEPT  # kept for the caller


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
def test_a_refused_answer_keeps_its_first_bytes_and_no_more(declared: bool) -> None:
    answer, _ = against([huge(POLL_BODY_CAP + 1, declared=declared)], poll)
    assert answer.status == 200
    assert answer.refused_head == b"x" * HEAD_KEPT
    assert "xxxx" not in repr(answer)  # what the server sent (a token, maybe) is not shown


def test_a_redirect_is_not_followed_with_the_token() -> None:
    answer, server = against([redirect("http://127.0.0.1:9/steal")], poll)
    assert answer.kind is AnswerKind.REJECTED
    assert len(server.seen) == 1


def test_a_surrogate_in_an_answer_is_decoded_not_fatal() -> None:
    answer, _ = against([json_reply({"next_poll_seconds": 10, "error": "\udc80"})], poll)
    assert answer.ok
    assert isinstance(parse_poll(answer.body), Idle)


@pytest.mark.parametrize("value", [math.nan, math.inf, 1e308])
def test_next_poll_seconds_that_is_not_a_finite_number_is_ignored(value: float) -> None:
    parsed = parse_poll({"next_poll_seconds": value})
    assert isinstance(parsed, Idle)
    assert math.isfinite(parsed.next_poll_seconds)
    assert parsed.next_poll_seconds <= 3600


def test_retry_after_is_capped_at_max_backoff_seconds() -> None:
    backoff = Backoff(cap=60.0, rng=random.Random(1))
    assert backoff.next(retry_after=300.0) == 60.0
