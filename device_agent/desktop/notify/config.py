"""The `[notifications]` table of the config file, parsed and checked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from device_agent.desktop.notify.backends import BACKENDS

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
    enabled: bool = False  # for runs whose payload does not ask and that have no own setting
    budget_per_day: int = 10
    cooldown_seconds: float = 300.0
    backend: str = "auto"  # auto | osascript | notify-send | gdbus | none
    targets: Mapping[str, TargetSetting] = field(default_factory=dict)  # "watcher:12" -> ...

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> NotificationSettings:
        """Parse the `[notifications]` table of the config file."""
        known = {"enabled", "budget_per_day", "cooldown_seconds", "backend", "targets"}
        for key in data:
            if key not in known:
                raise NotificationConfigError(
                    f"unknown setting 'notifications.{key}': use one of {', '.join(sorted(known))}"
                )
        enabled = data.get("enabled", False)
        if not isinstance(enabled, bool):
            raise NotificationConfigError("notifications.enabled must be true or false")
        budget = data.get("budget_per_day", 10)
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
            raise NotificationConfigError("notifications.budget_per_day must be a whole number ≥ 0")
        cooldown = data.get("cooldown_seconds", 300.0)
        if not isinstance(cooldown, int | float) or isinstance(cooldown, bool) or cooldown < 0:
            raise NotificationConfigError("notifications.cooldown_seconds must be seconds ≥ 0")
        backend = data.get("backend", "auto")
        if backend not in ("auto", *BACKENDS, "none"):
            raise NotificationConfigError(
                f"notifications.backend must be one of auto, {', '.join(BACKENDS)}, none"
            )
        targets = data.get("targets", {})
        if not isinstance(targets, Mapping):
            raise NotificationConfigError("[notifications.targets] must be a table")
        return cls(
            enabled=enabled,
            budget_per_day=budget,
            cooldown_seconds=float(cooldown),
            backend=backend,
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
