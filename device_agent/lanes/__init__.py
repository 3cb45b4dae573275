"""The lanes this agent runs, keyed by the poll answer's `run_type`.

Adding a lane is one module beside `watcher` and `automation` and one entry
below; the pipeline needs no change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from device_agent.lanes.automation import AUTOMATION
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
from device_agent.lanes.watcher import WATCHER

__all__ = [
    "LANES",
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

LANES: Final[Mapping[str, Lane]] = {lane.run_type: lane for lane in (WATCHER, AUTOMATION)}


def lane_for(run_type: str) -> Lane:
    """The lane for `run_type`; an `UnhandledLane` for one this agent does not run."""
    return LANES.get(run_type) or UnhandledLane(run_type)


def trigger_lane(requested: str | None, last_seen: str | None) -> Lane:
    """The lane whose "Run now" route to use: the one asked for, else the lane of the run this
    device claimed last from the server (it speaks that lane), else the watcher lane
    (docs/protocol.md, "Run now")."""
    name = requested or last_seen or WATCHER.run_type
    lane = LANES.get(name)
    if lane is None:
        raise ValueError(f"there is no Run now for run_type={name!r}")
    return lane
