"""The control socket: private, strict about what it accepts, never held up by a client."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from device_agent.desktop.control import ControlServer, Refused
from device_agent.desktop.control_client import (
    MAX_LINE_BYTES,
    SUN_PATH_MAX,
    ControlError,
    DaemonNotRunning,
    Refusal,
    Target,
    request,
    socket_path,
)
from tests.desktop.fakes import FakeHandler


def serve(
    tmp_path: Path, test: Callable[[Path, FakeHandler], Awaitable[None]], **options: float
) -> FakeHandler:
    handler = FakeHandler()
    path = tmp_path / "control.sock"

    async def main() -> None:
        async with ControlServer(path, handler, **options):
            await test(path, handler)

    asyncio.run(main())
    return handler


async def ask(path: Path, op: str, **args: Any) -> dict[str, Any]:
    return await asyncio.to_thread(request, path, op, 10.0, **args)


async def raw(path: Path, data: bytes) -> dict[str, Any]:
    """Send bytes as they are and read the one-line answer."""

    def exchange() -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer and hang up before reading everything
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
            return answer

    answer = json.loads((await asyncio.to_thread(exchange)).split(b"\n")[0])
    assert isinstance(answer, dict)
    return answer


def test_socket_is_0600_and_removed_on_close(tmp_path: Path) -> None:
    async def check(path: Path, handler: FakeHandler) -> None:
        info = os.lstat(path)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert info.st_uid == os.getuid()

    serve(tmp_path, check)
    assert not (tmp_path / "control.sock").exists()


def test_status_returns_the_handlers_state_with_elapsed_time_and_tail(tmp_path: Path) -> None:
    async def check(path: Path, handler: FakeHandler) -> None:
        handler.state = {
            "state": "busy",
            "runs": [{"run_id": 3, "name": "Inbox", "elapsed_seconds": 12.5, "output_tail": "ok"}],
        }
        assert await ask(path, "status") == handler.state

    serve(tmp_path, check)


def test_actions_reach_the_handler(tmp_path: Path) -> None:
    async def check(path: Path, handler: FakeHandler) -> None:
        assert await ask(path, "pause") == {}
        assert await ask(path, "resume") == {}
        assert await ask(path, "poll_now") == {}
        answer = await ask(path, "trigger", target_id="12", lane="watcher")
        assert answer == {"run_id": 7, "already_queued": False}
        targets = (await ask(path, "targets"))["targets"]
        assert [Target.from_dict(t) for t in targets] == handler.targets()

    handler = serve(tmp_path, check)
    assert handler.calls == [("pause",), ("resume",), ("poll_now",), ("trigger", "12", "watcher")]


def test_resume_past_limit_reaches_the_handler_and_answers_the_day(tmp_path: Path) -> None:
    async def check(path: Path, handler: FakeHandler) -> None:
        assert await ask(path, "resume_past_limit") == {"past_limit": True, "reached": None}

    handler = serve(tmp_path, check)
    assert handler.calls == [("resume_past_limit",)]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"not json\n", "not JSON"),
        (b"[1, 2]\n", "JSON object"),
        (b'{"op": "status"}\n', "version"),
        (b'{"v": 1, "op": "reboot"}\n', "unknown op 'reboot'"),
        (b'{"v": 1, "op": "status", "x": 1}\n', "unexpected fields"),
        (b'{"v": 1, "op": "trigger"}\n', "target_id"),
        (b'{"v": 1, "op": "trigger", "target_id": "1\\n2"}\n', "control characters"),
        (b'{"v": 1, "op": "trigger", "target_id": "1", "lane": "sync"}\n', "lane"),
        (b'{"v": 1, "op": "status"}', "newline"),
    ],
)
def test_malformed_and_unknown_requests_are_refused(tmp_path: Path, data: bytes, says: str) -> None:
    async def check(path: Path, handler: FakeHandler) -> None:
        answer = await raw(path, data)
        assert answer["ok"] is False
        assert says in answer["error"]
        assert handler.calls == []

    serve(tmp_path, check)


def test_oversized_request_is_refused(tmp_path: Path) -> None:
    async def check(path: Path, handler: FakeHandler) -> None:
        answer = await raw(path, b'{"v": 1, "op": "status", "pad": "' + b"x" * MAX_LINE_BYTES)
        assert answer["ok"] is False
        assert "longer than" in answer["error"]
        assert handler.calls == []

    serve(tmp_path, check)


def test_a_silent_client_does_not_block_others_and_is_cut_off(tmp_path: Path) -> None:
    async def check(path: Path, handler: FakeHandler) -> None:
        reader, writer = await asyncio.open_unix_connection(str(path))
        try:
            # The silent client is still connected while another gets its answer.
            assert await ask(path, "status") == handler.state
            cut_off = json.loads(await reader.readline())
            assert cut_off["ok"] is False
            assert "no complete request" in cut_off["error"]
        finally:
            writer.close()

    serve(tmp_path, check, read_deadline=0.5)


def test_a_failing_handler_answers_an_error_and_the_socket_keeps_serving(tmp_path: Path) -> None:
    async def check(path: Path, handler: FakeHandler) -> None:
        def broken() -> None:
            raise RuntimeError("boom")

        handler.pause = broken  # type: ignore[method-assign]
        with pytest.raises(ControlError, match="internal error: RuntimeError: boom"):
            await ask(path, "pause")
        assert await ask(path, "status") == handler.state

    serve(tmp_path, check)


def test_a_refusal_with_an_exit_code_reaches_the_client_as_a_verdict(tmp_path: Path) -> None:
    async def check(path: Path, handler: FakeHandler) -> None:
        async def refused(target_id: str, lane: str | None) -> dict[str, Any]:
            raise Refused("'x' is not a watcher id", exit_code=2)

        handler.trigger = refused  # type: ignore[method-assign]
        with pytest.raises(Refusal) as caught:
            await ask(path, "trigger", target_id="x")
        assert (caught.value.reason, caught.value.exit_code) == ("'x' is not a watcher id", 2)
        with pytest.raises(Refusal) as plain:
            await ask(path, "nonsense")
        assert plain.value.exit_code is None  # no verdict: the client may try another way

    serve(tmp_path, check)


def test_a_run_now_past_its_deadline_says_so_not_that_the_request_was_incomplete(
    tmp_path: Path,
) -> None:
    async def check(path: Path, handler: FakeHandler) -> None:
        async def slow(target_id: str, lane: str | None) -> dict[str, Any]:
            await asyncio.sleep(30)
            return {}

        handler.trigger = slow  # type: ignore[method-assign]
        with pytest.raises(Refusal) as caught:
            await ask(path, "trigger", target_id="x")
        assert "no complete request" not in caught.value.reason
        assert "Run now" in caught.value.reason

    serve(tmp_path, check, trigger_deadline=0.2)


def test_client_raises_daemon_not_running_without_a_socket(tmp_path: Path) -> None:
    with pytest.raises(DaemonNotRunning, match="daemon is not running"):
        request(tmp_path / "control.sock", "status", 1.0)


def test_client_raises_daemon_not_running_on_a_stale_socket(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))
    with pytest.raises(DaemonNotRunning):
        request(path, "status", 1.0)


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(tmp_path / "control.sock"))

    async def check(path: Path, handler: FakeHandler) -> None:
        assert await ask(path, "status") == handler.state

    serve(tmp_path, check)


def test_refuses_a_path_that_is_not_a_socket(tmp_path: Path) -> None:
    (tmp_path / "control.sock").write_text("mine")
    with pytest.raises(ControlError, match="not a socket of yours"):
        serve(tmp_path, lambda path, handler: asyncio.sleep(0))
    assert (tmp_path / "control.sock").read_text() == "mine"


def test_refuses_to_take_over_a_live_daemons_socket(tmp_path: Path) -> None:
    async def check(path: Path, handler: FakeHandler) -> None:
        second = ControlServer(path, FakeHandler())
        with pytest.raises(ControlError, match="already answering"):
            await second.start()
        assert await ask(path, "status") == handler.state

    serve(tmp_path, check)


def test_a_path_too_long_for_sun_path_moves_to_a_private_temp_dir(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    assert socket_path(tmp_path) == tmp_path / "control.sock"
    moved = socket_path(deep)
    assert len(os.fsencode(moved)) < SUN_PATH_MAX
    assert stat.S_IMODE(moved.parent.stat().st_mode) == 0o700
    assert moved != socket_path(tmp_path / ("f" * 120))
