"""The lanes this agent runs, keyed by the poll answer's `run_type`.

Adding a lane is one module beside `watcher`, `automation` and `chat` and one
entry in `_LANE_MODULES` below; the pipeline needs no change.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib import import_module
from typing import Final

from device_agent.lanes.base import (
    Done,
    Fail,
    Lane,
    LaneRun,
    Resume,
    UnhandledLane,
    Verdict,
    read_claim,
)
from device_agent.lanes.routes import TRIGGER_ROUTES
from device_agent.lanes.watcher.lane import WATCHER

__all__ = [
    "LANES",
    "RUN_NOW_LANES",
    "Done",
    "Fail",
    "Lane",
    "LaneRun",
    "Resume",
    "UnhandledLane",
    "Verdict",
    "lane_for",
    "read_claim",
    "trigger_lane",
]

# run_type -> (module, name) of its lane. A lane's module is imported the first time a run of
# it arrives (or "Run now" asks for it), not at start-up: the automation lane's payload,
# prompt and access modules cost `device-agent run` milliseconds before its first poll, and a
# device that never sees an automation run never needs them.
_LANE_MODULES: Final = {
    "watcher": ("device_agent.lanes.watcher.lane", "WATCHER"),
    "automation": ("device_agent.lanes.automation.lane", "AUTOMATION"),
    "chat_message": ("device_agent.lanes.chat.lane", "CHAT"),
}
# The lanes with a "Run now": a chat turn is started by a person writing, never by the device.
RUN_NOW_LANES: Final = tuple(TRIGGER_ROUTES)


class _Lanes(Mapping[str, Lane]):
    """The lanes by run_type, each imported when first looked up (then kept: a run looks its
    lane up several times)."""

    def __init__(self) -> None:
        self._loaded: dict[str, Lane] = {}

    def __getitem__(self, run_type: str) -> Lane:
        lane = self._loaded.get(run_type)
        if lane is None:
            module, name = _LANE_MODULES[run_type]
            lane = self._loaded[run_type] = getattr(import_module(module), name)
        return lane

    def __iter__(self) -> Iterator[str]:
        return iter(_LANE_MODULES)

    def __len__(self) -> int:
        return len(_LANE_MODULES)


LANES: Final[Mapping[str, Lane]] = _Lanes()


def lane_for(run_type: str) -> Lane:
    """The lane for `run_type`; an `UnhandledLane` for one this agent does not run."""
    return LANES.get(run_type) or UnhandledLane(run_type)


def trigger_lane(requested: str | None, last_seen: str | None) -> Lane:
    """The lane whose "Run now" route to use: the one asked for, else the lane of the run this
    device claimed last from the server (it speaks that lane; `last_seen` is one of
    `RUN_NOW_LANES`), else the watcher lane (docs/protocol.md, "Run now")."""
    name = requested or last_seen or WATCHER.run_type
    if name not in RUN_NOW_LANES:
        raise ValueError(f"there is no Run now for run_type={name!r}")
    return LANES[name]
