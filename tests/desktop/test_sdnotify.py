"""sd_notify datagrams reach a real notify socket; without one, nothing happens."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_agent.desktop.sdnotify import SystemdNotifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(10)
    yield str(path), sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_stopping_and_status_arrive(notify_socket: tuple[str, socket.socket]) -> None:
    address, sock = notify_socket
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": address})
    assert notifier.ready("idle, polling\nevery 40 s")
    assert received(sock) == ["READY=1", "STATUS=idle, polling every 40 s"]
    assert notifier.status("busy: 1 run")
    assert received(sock) == ["STATUS=busy: 1 run"]
    assert notifier.stopping()
    assert received(sock) == ["STOPPING=1"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux's")
def test_abstract_socket_names_start_with_at() -> None:
    name = f"device-agent-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        assert SystemdNotifier.from_environ({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == ["READY=1"]


def test_watchdog_pings_at_half_the_interval_the_unit_asks_for(
    notify_socket: tuple[str, socket.socket],
) -> None:
    address, sock = notify_socket
    notifier = SystemdNotifier.from_environ(
        {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "20000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert notifier.watchdog_interval() == 0.01

    async def main() -> list[str]:
        task = asyncio.create_task(notifier.keep_watchdog())
        pings = [await asyncio.to_thread(received, sock) for _ in range(3)]
        task.cancel()
        return [line for ping in pings for line in ping]

    assert asyncio.run(main()) == ["WATCHDOG=1"] * 3


def test_no_watchdog_when_the_unit_asks_another_process() -> None:
    notifier = SystemdNotifier.from_environ(
        {"NOTIFY_SOCKET": "/nowhere", "WATCHDOG_USEC": "20000", "WATCHDOG_PID": "1"}
    )
    assert notifier.watchdog_interval() is None
    asyncio.run(notifier.keep_watchdog())  # returns at once instead of pinging


def test_the_variables_are_taken_out_of_the_environment() -> None:
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "2", "HOME": "/h"}
    SystemdNotifier.from_environ(env)
    assert env == {"HOME": "/h"}


def test_without_systemd_every_call_is_a_no_op() -> None:
    notifier = SystemdNotifier.from_environ({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.stopping()
    assert not notifier.watchdog()


def test_a_dead_socket_is_reported_not_raised(tmp_path: Path) -> None:
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.ready() is False
    assert notifier.stopping() is False
