"""The notification policy (with a clock the test moves) and the notifier backends."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from device_agent.desktop.notify import (
    Backend,
    NotificationConfigError,
    NotificationSettings,
    TargetSetting,
    gdbus_argv,
    notify_send_argv,
    osascript_argv,
)
from device_agent.desktop.notify.notifier import Notifier, check, find_backend
from device_agent.desktop.notify.policy import FinishedRun, NotificationPolicy, clean, message
from tests.support.clock import FakeClock

NINE_AM = time.mktime((2026, 11, 30, 9, 0, 0, 0, 0, -1))
DAY = 24 * 3600.0


def run(target: str = "1", *, ok: bool = True, **fields: object) -> FinishedRun:
    base = FinishedRun("watcher", target, f"Watcher {target}", ok, "All good\nmore", "notification")
    return replace(base, **fields)  # type: ignore[arg-type]


def policy(**settings: object) -> tuple[NotificationPolicy, FakeClock]:
    clock = FakeClock(NINE_AM)
    return NotificationPolicy(NotificationSettings(**settings), clock=clock), clock  # type: ignore[arg-type]


# ------------------------------------------------------------------ channel


@pytest.mark.parametrize(
    ("channel", "enabled", "shown"),
    [
        ("notification", False, True),
        ("both", False, True),
        ("slack", False, False),
        (None, False, False),
        (None, True, True),
        ("slack", True, True),
    ],
)
def test_channel_from_the_payload_else_the_global_setting(
    channel: str | None, enabled: bool, shown: bool
) -> None:
    rules, _ = policy(enabled=enabled)
    assert rules.decide(run(channel=channel)).show is shown


def test_a_per_target_setting_wins_over_payload_and_global() -> None:
    targets = {
        "watcher:1": TargetSetting(enabled=False),
        "automation:a": TargetSetting(enabled=True),
    }
    rules, _ = policy(enabled=False, targets=targets)
    assert not rules.decide(run("1", channel="notification")).show
    assert rules.decide(run("a", lane="automation", channel=None)).show


# ------------------------------------------------------------------ cooldown


def test_cooldown_holds_back_a_second_notification_of_the_same_target() -> None:
    rules, clock = policy(cooldown_seconds=300)
    assert rules.decide(run("1")).show
    clock.advance(299)
    assert rules.decide(run("1")).reason == "cooling down"
    assert rules.decide(run("2")).show  # another target has its own cooldown
    clock.advance(1)
    assert rules.decide(run("1")).show


def test_the_watchers_own_longer_cooldown_counts() -> None:
    rules, clock = policy(cooldown_seconds=60)
    assert rules.decide(run(min_cooldown_seconds=600)).show
    clock.advance(300)
    assert not rules.decide(run(min_cooldown_seconds=600)).show
    clock.advance(300)
    assert rules.decide(run(min_cooldown_seconds=600)).show


# ------------------------------------------------------------------ failures


def test_a_failing_target_notifies_once_until_it_succeeds_again() -> None:
    rules, clock = policy(cooldown_seconds=60)
    assert rules.decide(run(ok=True)).show
    first = rules.decide(run(ok=False))
    assert first.show  # the first failure is not held back by the cooldown
    clock.advance(3600)
    assert rules.decide(run(ok=False)).reason == "already told about this failure"
    assert rules.decide(run(ok=True)).show
    assert rules.decide(run(ok=False)).show


def test_a_failure_dropped_by_the_budget_is_told_when_there_is_room_again() -> None:
    rules, clock = policy(budget_per_day=1)
    assert rules.decide(run("2")).show
    assert not rules.decide(run("1", ok=False)).show
    clock.advance(DAY)
    assert rules.decide(run("1", ok=False)).show


# ------------------------------------------------------------------ budget


def test_normal_stops_at_the_budget_and_the_next_day_starts_fresh() -> None:
    rules, clock = policy(budget_per_day=10)
    assert all(rules.decide(run(str(n))).show for n in range(10))
    assert "daily budget" in rules.decide(run("10")).reason
    clock.advance(DAY)
    assert rules.decide(run("10")).show


def test_high_may_pass_the_budget_up_to_twice_it() -> None:
    rules, _ = policy(budget_per_day=3)
    shown = [rules.decide(run(str(n), priority="high")).show for n in range(8)]
    assert shown == [True] * 6 + [False] * 2


def test_low_is_dropped_first_leaving_room_for_normal() -> None:
    rules, _ = policy(budget_per_day=10)
    assert all(rules.decide(run(str(n))).show for n in range(5))
    assert not rules.decide(run("low", priority="low")).show
    assert rules.decide(run("normal")).show


def test_the_config_may_set_a_targets_priority() -> None:
    rules, _ = policy(budget_per_day=1, targets={"watcher:9": TargetSetting(priority="high")})
    assert rules.decide(run("1")).show
    assert not rules.decide(run("2")).show
    assert rules.decide(run("9")).show


# ------------------------------------------------------------------ settings


def test_settings_from_a_config_table() -> None:
    settings = NotificationSettings.from_mapping(
        {
            "enabled": True,
            "budget_per_day": 5,
            "cooldown_seconds": 30,
            "targets": {"watcher:12": False, "automation:ab": {"priority": "high"}},
        }
    )
    assert settings.budget_per_day == 5
    assert settings.cooldown_seconds == 30.0
    assert settings.targets["watcher:12"] == TargetSetting(enabled=False)
    assert settings.targets["automation:ab"] == TargetSetting(priority="high")


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"enable": True}, "unknown setting 'notifications.enable'"),
        ({"enabled": "yes"}, "notifications.enabled must be true or false"),
        ({"budget_per_day": -1}, "budget_per_day"),
        ({"cooldown_seconds": "soon"}, "cooldown_seconds"),
        ({"backend": "growl"}, "notifications.backend"),
        ({"targets": {"12": True}}, 'name a target as "watcher:<id>"'),
        ({"targets": {"watcher:1": {"priority": "urgent"}}}, "priority must be one of"),
        ({"targets": {"watcher:1": 3}}, "must be true, false, or a table"),
    ],
)
def test_bad_settings_name_the_key(table: dict[str, object], says: str) -> None:
    with pytest.raises(NotificationConfigError, match=says):
        NotificationSettings.from_mapping(table)


# ------------------------------------------------------------------ message


def test_the_message_is_the_name_and_the_first_line_cleaned_and_bounded() -> None:
    title, body = message(run(name="Inbox\x1b[31m\u202e", text="\n\n  Found 3 items\x07\nrest"))
    assert title == "Inbox [31m"
    assert body == "Found 3 items"
    _, failed = message(run(ok=False, text="x" * 5000))
    assert failed.startswith("Failed: x")
    assert len(failed) < 220
    assert clean("a\u2028b\tc", 10) == "a b c"


# ------------------------------------------------------------------ backends

NASTY = 'It\'s "done" \\ $(rm -rf ~) <b>&</b>'


def test_osascript_passes_the_text_as_arguments_not_in_the_script() -> None:
    argv = osascript_argv("/usr/bin/osascript", NASTY, "-body", "normal")
    assert argv[-2:] == [NASTY, " -body"]  # never taken for an osascript option
    script = " ".join(argv[1:-2])
    assert "rm -rf" not in script
    assert argv[1::2][:3] == ["-e", "-e", "-e"]


def test_notify_send_ends_options_and_escapes_markup() -> None:
    argv = notify_send_argv("notify-send", "-n title", NASTY, "high")
    assert argv[:4] == ["notify-send", "--app-name=device-agent", "--urgency=critical", "--"]
    assert argv[4] == "-n title"
    assert argv[5] == 'It\'s "done" \\ $(rm -rf ~) &lt;b&gt;&amp;&lt;/b&gt;'


def test_gdbus_quotes_gvariant_strings() -> None:
    argv = gdbus_argv("gdbus", "it's", "a\\b", "low")
    assert argv[9:11] == ["'it\\'s'", "'a\\\\b'"]
    assert "{'urgency': <byte 0>}" in argv


def test_find_backend_prefers_the_platforms_notifier() -> None:
    settings = NotificationSettings()
    found = {"notify-send": None, "gdbus": "/usr/bin/gdbus", "osascript": "/usr/bin/osascript"}
    assert find_backend(settings, platform="linux", which=found.get) == Backend(
        "gdbus", "/usr/bin/gdbus"
    )
    assert find_backend(settings, platform="darwin", which=found.get) == Backend(
        "osascript", "/usr/bin/osascript"
    )
    assert find_backend(replace(settings, backend="none"), which=found.get) is None


def test_check_says_what_to_install_when_no_notifier_is_found() -> None:
    ok, detail = check(NotificationSettings(), platform="linux", which=lambda name: None)
    assert not ok
    assert "install libnotify-bin" in detail
    ok, detail = check(NotificationSettings(), platform="linux", which=lambda name: "/bin/" + name)
    assert ok
    assert detail == "notify-send (/bin/notify-send)"


# ------------------------------------------------------------------ the notifier


def fake_notifier(tmp_path: Path, code: int = 0) -> Path:
    script = tmp_path / "notify-send"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(tmp_path / 'shown.jsonl')!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"sys.exit({code})\n"
    )
    script.chmod(0o755)
    return script


def test_the_notifier_shows_a_wanted_run_in_the_background(tmp_path: Path) -> None:
    script = fake_notifier(tmp_path)

    async def main() -> None:
        notifier = Notifier(NotificationSettings(), backend=Backend("notify-send", str(script)))
        assert notifier.submit(run(text="Found 3 items")).show
        assert not notifier.submit(run(channel=None)).show
        await notifier.aclose()

    asyncio.run(main())
    lines = (tmp_path / "shown.jsonl").read_text().splitlines()
    assert [json.loads(line)[-2:] for line in lines] == [["Watcher 1", "Found 3 items"]]


@pytest.mark.parametrize("code", [1, None])
def test_a_failing_or_missing_notifier_never_raises(tmp_path: Path, code: int | None) -> None:
    path = str(fake_notifier(tmp_path, code)) if code is not None else str(tmp_path / "missing")

    async def main() -> None:
        notifier = Notifier(NotificationSettings(), backend=Backend("notify-send", path))
        assert notifier.submit(run()).show
        await notifier.aclose()

    asyncio.run(main())
    assert (tmp_path / "shown.jsonl").exists() is (code is not None)


def test_without_a_notifier_nothing_is_shown() -> None:
    async def main() -> None:
        notifier = Notifier(NotificationSettings(), find=lambda settings: None)
        assert notifier.submit(run()).reason == "no notifier on this machine"

    asyncio.run(main())


def test_a_notice_about_the_agent_is_shown_whatever_the_run_policy(tmp_path: Path) -> None:
    script = fake_notifier(tmp_path)

    async def main() -> None:
        settings = NotificationSettings(enabled=False, budget_per_day=0)  # runs: never
        notifier = Notifier(settings, backend=Backend("notify-send", str(script)))
        assert not notifier.submit(run()).show
        assert notifier.notice("device-agent: daily limit reached", "$5.02 of $5.00\x1b[2J").show
        await notifier.aclose()

    asyncio.run(main())
    (line,) = (tmp_path / "shown.jsonl").read_text().splitlines()
    assert json.loads(line)[-2:] == ["device-agent: daily limit reached", "$5.02 of $5.00 [2J"]


def test_a_notice_without_a_notifier_is_not_shown() -> None:
    async def main() -> None:
        notifier = Notifier(NotificationSettings(), find=lambda settings: None)
        assert notifier.notice("t", "b").reason == "no notifier on this machine"

    asyncio.run(main())
