"""The lanes this agent runs, keyed by the poll answer's `run_type`.

Adding a lane is one module beside `watcher`, `automation` and `chat` and one
entry in `LANES` below; the pipeline needs no change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from device_agent.lanes.automation.lane import AUTOMATION
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
from device_agent.lanes.chat.lane import CHAT
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

# run_type -> its lane.
LANES: Final[Mapping[str, Lane]] = {
    "watcher": WATCHER,
    "automation": AUTOMATION,
    "chat_message": CHAT,
}
# The lanes with a "Run now": a chat turn is started by a person writing, never by the device.
RUN_NOW_LANES: Final = tuple(TRIGGER_ROUTES)


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
