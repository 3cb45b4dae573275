"""Run now that tells the truth: queue a run this device will really receive, and say what the
server answered, never a promise.

See docs/protocol.md, "Run now". A bound token uses the device route of the run's lane, which
checks pinning itself. An unbound token can only use the tool proxy's `manage_watchers
{"action": "trigger"}`, which does not check pinning (docs/protocol.md, "What a real server
does"): so it is used only after the server's `get_watcher` tool (else its `list_watchers`)
has said the watcher is pinned to this device.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Final

import httpx

from device_agent.cli.output import printable
from device_agent.errors import ExitCode
from device_agent.identity.errors import AccountError, AuthRefused, UsageError
from device_agent.identity.http import (
    body_of,
    error_text,
    fail,
    send,
)
from device_agent.identity.store import Credential
from device_agent.lanes.routes import trigger_route
from device_agent.server.http import Reply

_NOT_BOUND: Final = "Token is not bound to a device worker"
_NOT_AN_ID: Final = "Endpoint not available to user-scoped workers"
# The device routes' "Watcher not found" / "Automation not found", the tool proxy's
# "Watcher 7 not found." (not a "Not Found" of a route or tool the server lacks)
_NOT_FOUND: Final = re.compile(r"^(Watcher|Automation)( \d+)? not found\.?$")
# 409 "Watcher is not active" / "... has no agent assigned"; the tool proxy's 400 "Watcher 7 is
# not active." / "... is not assigned to a Lobu agent."
_CANNOT_RUN: Final = re.compile(r"not active|no agent|not assigned", re.IGNORECASE)
_RUN_IT_FROM_THE_WEB_APP: Final = "nothing was queued; use Run now in the web app instead"


@dataclass(frozen=True)
class Triggered:
    run_id: object
    status: str
    already_queued: bool
    route: str  # "device" or "tool proxy"

    def describe(self, lane: str, item_id: str) -> str:
        shown = self.run_id if isinstance(self.run_id, int | str) else None
        run = f"run {printable(str(shown))}" if shown is not None else "a run"
        if self.already_queued:
            status = printable(self.status)
            return f"{lane} {item_id}: {run} was already {status}; no new run was queued"
        if self.route == "tool proxy" and self.status != "pending":
            # The tool proxy returns a run that is already pending or running as it is.
            return (
                f"{lane} {item_id}: the server returned {run}, status {self.status!r}: a run "
                "already under way, so no new run was queued"
            )
        return f"{lane} {item_id}: {run} queued, server status {self.status!r}"


def check_item_id(item_id: str, lane: str) -> None:
    """Run now takes the numeric id; a slug or a name gets a hint instead of the server's 403."""
    if not (item_id.isascii() and item_id.isdigit() and int(item_id) > 0):
        raise _not_an_id(item_id, lane)


def _not_an_id(item_id: str, lane: str) -> UsageError:
    return UsageError(
        f"{item_id!r} is not a {lane} id: `device-agent trigger` takes the number the "
        f"web app shows in the {lane}'s address (…/{lane}s/<id>), e.g. `device-agent trigger 42`"
    )


async def trigger(
    client: httpx.AsyncClient,
    credential: Credential,
    *,
    item_id: str,
    lane: str,
    worker_id: str,
) -> Triggered:
    check_item_id(item_id, lane)
    if credential.bound and credential.worker_id != worker_id:
        raise UsageError(
            f"the stored token is bound to worker_id {credential.worker_id!r}, not this device's "
            f"{worker_id!r}: set worker_id to match, or run `device-agent login` again"
        )
    response = await send(client, "POST", trigger_route(lane, item_id), bearer=credential.token)
    if response.status_code == 200:
        return _triggered(body_of(response), route="device")
    said = error_text(response)
    if response.status_code == 403 and said == _NOT_BOUND and not credential.bound:
        if lane != "watcher":
            raise AuthRefused(
                "Run now for an automation needs a token bound to this device, and the stored "
                f"one is not: run `device-agent login` to get one, or {_RUN_IT_FROM_THE_WEB_APP}"
            )
        return await _trigger_unbound(client, credential.token, item_id, worker_id)
    raise _refused(response, lane, item_id)


async def _trigger_unbound(
    client: httpx.AsyncClient, token: str, watcher_id: str, worker_id: str
) -> Triggered:
    device_uuid, org_slug = await _this_device(client, token, worker_id)
    pinned_to = await _pinned_device(client, token, org_slug, watcher_id)
    if pinned_to != device_uuid:
        where = "to no device" if pinned_to is None else "to another device"
        raise AccountError(
            f"watcher {watcher_id} is pinned {where}, not to this one ({printable(worker_id)}): "
            "its run would never reach this agent, so nothing was queued. Pin the watcher to "
            "this device in the web app, or run it from the device it is pinned to",
            ExitCode.CONFIG,
        )
    answer = await _tool(
        client,
        token,
        org_slug,
        "manage_watchers",
        {"action": "trigger", "watcher_id": watcher_id},
        watcher_id,
    )
    return _triggered(answer, route="tool proxy")


async def _this_device(client: httpx.AsyncClient, token: str, worker_id: str) -> tuple[str, str]:
    """This device's server-side id and its organisation, from the user's device list."""
    response = await send(client, "GET", "/api/me/devices", bearer=token)
    if response.status_code != 200:
        raise fail(response, "looking up this device", fix="run `device-agent login` again")
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    devices = body.get("devices") if isinstance(body, dict) else body
    for device in devices if isinstance(devices, list) else []:
        if isinstance(device, dict) and device.get("worker_id") == worker_id:
            uuid, slug = device.get("id"), device.get("organization_slug")
            if isinstance(uuid, str) and isinstance(slug, str) and slug:
                return uuid, slug
    raise AccountError(
        f"the server does not know this device ({printable(worker_id)}) yet: it registers on "
        "its first poll, so start the agent once (`device-agent run --once`), then try again",
        ExitCode.CONFIG,
    )


class _Unsaid(enum.Enum):
    """An answer that does not say where a watcher is pinned."""

    UNSAID = enum.auto()


async def _pinned_device(
    client: httpx.AsyncClient, token: str, org_slug: str, watcher_id: str
) -> str | None:
    """The device UUID the watcher is pinned to (None: to no device).

    Read from the tool proxy's `get_watcher` (`watcher.device_worker_id`); a server whose
    `get_watcher` does not name it is asked `list_watchers` (`watchers[].device_worker_id`).
    """
    # One window is plenty: the answer is read for the watcher, not for its windows.
    detail = await _tool(
        client,
        token,
        org_slug,
        "get_watcher",
        {"watcher_id": watcher_id, "page_size": 1},
        watcher_id,
    )
    watcher = detail.get("watcher")
    if not isinstance(watcher, dict):  # the tool's answer for an id no watcher has
        raise _no_such(watcher_id, "watcher", "get_watcher found none")
    pinned = _pin_of(watcher)
    if pinned is _Unsaid.UNSAID:
        listed = await _tool(
            client, token, org_slug, "list_watchers", {"watcher_id": watcher_id}, watcher_id
        )
        rows = listed.get("watchers")
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and str(row.get("watcher_id", row.get("id"))) == watcher_id:
                pinned = _pin_of(row)
                break
    if pinned is _Unsaid.UNSAID:
        raise AccountError(
            f"cannot confirm that watcher {watcher_id} is pinned to this device (the server's "
            "get_watcher and list_watchers do not say where it is pinned), so it was not "
            "triggered: its run could go to another device. Use Run now in the web app, or "
            "sign in with a token bound to this device (`device-agent login`), whose Run now "
            "route checks the pinning itself",
            ExitCode.CONFIG,
        )
    return pinned


def _pin_of(watcher: dict[str, Any]) -> str | _Unsaid | None:
    if "device_worker_id" not in watcher:
        return _Unsaid.UNSAID
    pinned = watcher["device_worker_id"]
    return pinned if isinstance(pinned, str) and pinned else None


async def _tool(
    client: httpx.AsyncClient,
    token: str,
    org_slug: str,
    tool: str,
    body: dict[str, Any],
    watcher_id: str,
) -> dict[str, Any]:
    """One call of the server's tool proxy (the tools its MCP clients call), as a JSON object."""
    response = await send(client, "POST", f"/api/{org_slug}/{tool}", bearer=token, json=body)
    if response.status_code == 200:
        return body_of(response)
    said = error_text(response)
    if (
        response.status_code in (400, 404)
        and not _NOT_FOUND.search(said)
        and not _CANNOT_RUN.search(said)
    ):
        raise UsageError(
            f"Run now for watcher {watcher_id} with a token not bound to this device goes "
            f"through the server's `{tool}` tool, which refused: {response.status_code} "
            f"{said!r}; {_RUN_IT_FROM_THE_WEB_APP}"
        )
    raise _refused(response, "watcher", watcher_id)


def _triggered(body: dict[str, Any], *, route: str) -> Triggered:
    status = body.get("status")
    return Triggered(
        run_id=body.get("run_id"),
        status=status if isinstance(status, str) else "unknown",
        already_queued=body.get("already_queued") is True,
        route=route,
    )


def _no_such(item_id: str, lane: str, said: str) -> AccountError:
    return AccountError(
        f"the server has no {lane} {item_id} for this account ({said}): `device-agent trigger` "
        f"takes the number in the {lane}'s address in the web app (…/{lane}s/<id>)",
        ExitCode.CONFIG,
    )


def _refused(response: Reply, lane: str, item_id: str) -> AccountError:
    said = error_text(response)
    status = response.status_code
    if said == _NOT_AN_ID:
        return _not_an_id(item_id, lane)
    if status == 403 and "not pinned" in said:
        return AccountError(
            f"{lane} {item_id} is pinned to another device ({said!r}): trigger it from that "
            "device, or pin it to this one in the web app",
            ExitCode.CONFIG,
        )
    if status == 404 and "poll first" in said:
        return AccountError(
            "the server does not know this device yet: start the agent once "
            "(`device-agent run --once`), then try again",
            ExitCode.CONFIG,
        )
    if status in (400, 404) and _NOT_FOUND.search(said):
        return _no_such(item_id, lane, repr(said))
    if status in (400, 409) and _CANNOT_RUN.search(said):
        return AccountError(
            f"{lane} {item_id} cannot run now ({said!r}): make it active and give it an agent "
            "in the web app, then try again",
            ExitCode.CONFIG,
        )
    return fail(response, f"Run now for {lane} {item_id}", fix=_RUN_IT_FROM_THE_WEB_APP)
