"""Fixtures of the dev server's tests: a fresh state on a fake clock, served on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from device_agent.devserver import DevServer, DevState
from tests.support.clock import FakeClock
from tests.support.devserver import client_for


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> DevState:
    return DevState(create_checkin_watcher=False, clock=clock)


@pytest.fixture
def server(state: DevState) -> Iterator[DevServer]:
    with DevServer(state).running_in_thread() as running:
        yield running


@pytest.fixture
def token(state: DevState) -> str:
    return state.add_token()


@pytest.fixture
def client(server: DevServer, token: str) -> Iterator[httpx.Client]:
    with client_for(server, token) as http:
        yield http
