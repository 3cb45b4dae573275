"""The poll body both lanes send, the agent kinds it advertises, and the two refusal messages."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from device_agent.agent import poll_loop
from device_agent.cli.main import main
from device_agent.devserver import DevServer, DevState
from device_agent.executors.profiles import load_profiles
from device_agent.lanes.registration import (
    device_platform,
    offered_agent_kinds,
    platform_mismatch_message,
    poll_body,
    upgrade_required_message,
)


def body(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "worker_id": "headless:box-1a2b3c4d",
        "app_version": "0.9.0",
        "label": "box",
        "agent_kinds": ["codex", "claude-code"],
        "capacity_available": 1,
        "wait_seconds": 25,
        "platform": "headless",
    }
    fields.update(changes)
    return poll_body(**fields)  # type: ignore[arg-type]


def test_the_body_current_servers_need_for_automation_runs() -> None:
    assert body() == {
        "worker_id": "headless:box-1a2b3c4d",
        "platform": "headless",
        "app_version": "0.9.0",
        "label": "box",
        "capabilities": {"automations.execute": True},
        "backend_capacity": {"compiled_connector": 0},
        "agent_kinds": ["claude-code", "codex"],
        "capacity_available": 1,
        "wait_seconds": 25,
    }


def test_no_agent_kinds_is_sent_as_an_empty_list_not_omitted() -> None:
    assert body(agent_kinds=[])["agent_kinds"] == []


def test_at_the_daily_limit_the_body_offers_no_agent_kinds_and_no_capacity() -> None:
    closed = body(capacity_available=3, at_limit=True)
    assert (closed["agent_kinds"], closed["capacity_available"]) == ([], 0)
    assert closed["wait_seconds"] == 0  # a device with no room is never held
    assert closed["capabilities"] == {"automations.execute": True}  # still registered as is


@pytest.mark.parametrize(("asked", "sent"), [(60, 25), (10, 10), (0, 0), (-5, 0)])
def test_wait_seconds_is_kept_within_0_to_25(asked: int, sent: int) -> None:
    assert body(wait_seconds=asked)["wait_seconds"] == sent


def test_no_free_slot_means_no_hold_and_no_capacity() -> None:
    sent = body(capacity_available=0, wait_seconds=25)
    assert (sent["capacity_available"], sent["wait_seconds"]) == (0, 0)


def test_capacity_is_kept_within_what_servers_accept() -> None:
    assert body(capacity_available=5000)["capacity_available"] == 1024


@pytest.mark.parametrize(
    ("system", "platform"), [("darwin", "macos"), ("linux", "headless"), ("freebsd14", "headless")]
)
def test_platform_is_macos_on_a_mac_and_headless_elsewhere(system: str, platform: str) -> None:
    assert device_platform(system) == platform


def test_platform_defaults_to_this_machines() -> None:
    assert body(platform=None)["platform"] == device_platform()


def _fake_cli(directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    path.chmod(0o755)


def test_only_kinds_whose_cli_is_found_are_advertised(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    for name in ("claude", "pi", "agy"):
        _fake_cli(bin_dir, name)
    (bin_dir / "codex").write_text("not executable", encoding="utf-8")  # found but not runnable
    kinds = offered_agent_kinds(load_profiles(), str(bin_dir), default_agent="claude-code")
    assert kinds == ["agy", "claude-code", "pi"]


def test_no_cli_found_means_no_kinds(tmp_path: Path) -> None:
    assert offered_agent_kinds(load_profiles(), str(tmp_path), default_agent="claude-code") == []


def test_profiles_without_a_server_kind_are_not_advertised(tmp_path: Path) -> None:
    # The demo profile runs this Python, which is always found.
    profiles = load_profiles()
    assert profiles["demo"].resolve(os.environ.get("PATH", "")) is not None
    path = os.environ.get("PATH", "")
    assert "demo" not in offered_agent_kinds(profiles, path, default_agent="claude-code")
    # ... unless it is the device's default agent: then it is offered under its own name.
    assert offered_agent_kinds(profiles, str(tmp_path), default_agent="demo") == ["demo"]


def test_platform_mismatch_says_what_to_do() -> None:
    message = platform_mismatch_message("headless", "worker is bound to platform 'linux'")
    assert "worker is bound to platform 'linux'" in message
    assert "'linux'" in message
    assert "DEVICE_AGENT_WORKER_ID" in message


def test_upgrade_required_shows_the_servers_text() -> None:
    # The text lobu-ai/lobu client-version-floor.ts sends to a headless worker.
    text = "Update the headless worker to continue (this server requires a newer version)"
    assert upgrade_required_message(text).startswith(
        f"The server requires a newer device-agent: {text}"
    )
    assert upgrade_required_message().startswith("The server requires a newer device-agent.")


@pytest.mark.parametrize(
    ("version", "sent"),
    [
        ("0.1.0", "0.1.0"),
        ("1.2.3.4", "1.2.3.4"),
        ("1.4.0rc1", "1.4.0"),
        ("1.4.0.dev3+g12ab", "1.4.0"),
        ("nightly", "0.0.0"),
    ],
)
def test_app_version_is_sent_as_plain_dotted_numbers(version: str, sent: str) -> None:
    assert body(app_version=version)["app_version"] == sent


# ------------------------------ issue 21 point 4: doctor says what the poll body offers


@pytest.mark.parametrize(
    ("default_agent", "clis", "offered"),
    [
        ("command", [], ["command"]),  # a command of one's own: doctor used to say "none"
        ("claude-code", ["claude"], ["claude-code"]),
        ("command", ["claude", "codex"], ["claude-code", "codex", "command"]),
    ],
)
def test_doctor_and_the_poll_body_offer_the_same_agent_kinds(
    isolated_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    default_agent: str,
    clis: list[str],
    offered: list[str],
) -> None:
    bin_dir = tmp_path / "bin"
    for name in clis:
        _fake_cli(bin_dir, name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.local/bin with a real CLI in it
    monkeypatch.setenv("PATH", str(bin_dir))
    script = tmp_path / "my-agent"
    script.write_text("#!/bin/sh\ncat\n", encoding="utf-8")
    script.chmod(0o755)
    config = isolated_home / "config"
    (config / "executors").mkdir(parents=True)
    (config / "executors" / "command.toml").write_text(f'argv = ["{script}"]\n')
    (config / "config.toml").write_text(f'default_agent = "{default_agent}"\n')

    main(["doctor"])
    said = [
        line.split(": ", 1)[1]
        for line in capsys.readouterr().out.splitlines()
        if "agent kinds offered to current servers" in line
    ]
    assert said == [", ".join(offered)]

    sent: list[object] = []

    def recording_poll_body(**fields: Any) -> dict[str, Any]:
        body = poll_body(**fields)
        sent.append(body["agent_kinds"])
        return body

    monkeypatch.setattr(poll_loop, "poll_body", recording_poll_body)
    state = DevState(create_checkin_watcher=False)
    monkeypatch.setenv("DEVICE_AGENT_TOKEN", state.add_token())
    monkeypatch.setenv("DEVICE_AGENT_WORKER_ID", "linux:kinds")
    with DevServer(state).running_in_thread() as server:
        assert main(["run", "--once", "--server", server.url]) == 0
    assert sent == [offered]
