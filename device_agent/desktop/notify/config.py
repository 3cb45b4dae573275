"""The `[notifications]` table of the config file, parsed and checked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from device_agent.desktop.notify.backends import BACKENDS
from device_agent.schema import Invalid, read_table, setting

PRIORITIES: Final = ("low", "normal", "high")


class NotificationConfigError(ValueError):
    """A [notifications] setting is wrong; the message names the key and the fix."""


@dataclass(frozen=True)
class TargetSetting:
    """`[notifications.targets."watcher:12"]`: mute or enable one target, set its priority."""

    enabled: bool | None = None
    priority: str | None = None


@dataclass(frozen=True)
class NotificationSettings:
    enabled: bool = setting(
        False, help="notify runs whose payload does not ask and that have no own setting"
    )
    budget_per_day: int = setting(
        10,
        unit="notifications",
        low=0,
        high=1000,
        help="daily budget; `low` priority gets half of it, `high` up to twice it",
    )
    cooldown_seconds: float = setting(
        300.0,
        unit="seconds",
        low=0,
        high=86400,
        help="at most one notification per watcher or automation in this time",
    )
    backend: str = setting(
        "auto", choices=("auto", *BACKENDS, "none"), help="the program that shows notifications"
    )
    targets: Mapping[str, TargetSetting] = field(default_factory=dict)  # "watcher:12" -> ...

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> NotificationSettings:
        """Parse the `[notifications]` table of the config file."""
        try:
            values = read_table(cls, data, prefix="notifications.", extra=("targets",))
        except Invalid as exc:
            raise NotificationConfigError(str(exc)) from None
        targets = data.get("targets", {})
        if not isinstance(targets, Mapping):
            raise NotificationConfigError("[notifications.targets] must be a table")
        return cls(
            **values,
            targets={str(key): _target_setting(str(key), value) for key, value in targets.items()},
        )


def _target_setting(key: str, value: Any) -> TargetSetting:
    where = f'notifications.targets."{key}"'
    lane, _, target_id = key.partition(":")
    if lane not in ("watcher", "automation") or not target_id:
        raise NotificationConfigError(
            f'{where}: name a target as "watcher:<id>" or "automation:<id>"'
        )
    if isinstance(value, bool):
        return TargetSetting(enabled=value)
    if not isinstance(value, Mapping) or set(value) - {"enabled", "priority"}:
        raise NotificationConfigError(
            f"{where} must be true, false, or a table with enabled and priority"
        )
    enabled = value.get("enabled")
    priority = value.get("priority")
    if enabled is not None and not isinstance(enabled, bool):
        raise NotificationConfigError(f"{where}.enabled must be true or false")
    if priority is not None and priority not in PRIORITIES:
        raise NotificationConfigError(f"{where}.priority must be one of {', '.join(PRIORITIES)}")
    return TargetSetting(enabled=enabled, priority=priority)
