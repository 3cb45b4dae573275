"""Run now that tells the truth: queue a run this device will really receive, and say what the
server answered, never a promise.

See docs/protocol.md, "Run now". A bound token uses the device route of the run's lane, which
checks pinning itself. An unbound token can only use the tool-proxy route, which does not check
pinning (docs/protocol.md, "What a real server does"): so it is used only after the watcher is
confirmed to be pinned to this device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import httpx

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


@dataclass(frozen=True)
class Triggered:
    run_id: object
    status: str
    already_queued: bool
    route: str  # "device" or "tool proxy"

    def describe(self, lane: str, item_id: str) -> str:
        run = f"run {self.run_id}" if self.run_id is not None else "a run"
        if self.already_queued:
            return f"{lane} {item_id}: {run} was already {self.status}; no new run was queued"
        return f"{lane} {item_id}: {run} queued, server status {self.status!r}"


def check_item_id(item_id: str, lane: str) -> None:
    """Run now takes the numeric id; a slug or a name gets a hint instead of the server's 403."""
    if not (item_id.isascii() and item_id.isdigit() and int(item_id) > 0):
        raise _not_an_id(item_id, lane)


def _not_an_id(item_id: str, lane: str) -> UsageError:
    return UsageError(
        f"{item_id!r} is not a {lane} id: `device-agent trigger` takes the number the web app "
        f"shows in the {lane}'s address (…/{lane}s/<id>), e.g. `device-agent trigger 42`"
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
                "one is not: run `device-agent login` to get one"
            )
        return await _trigger_unbound(client, credential.token, item_id, worker_id)
    raise _refused(response, lane, item_id)


async def _trigger_unbound(
    client: httpx.AsyncClient, token: str, watcher_id: str, worker_id: str
) -> Triggered:
    device_uuid, org_slug = await _this_device(client, token, worker_id)
    pinned_to = await _pinned_device(client, token, org_slug, watcher_id)
    if pinned_to != device_uuid:
        raise AccountError(
            f"watcher {watcher_id} is pinned to another device, not this one ({worker_id}): "
            "its run would be queued there and never reach this agent. Trigger it from that "
            "device, or pin the watcher to this device in the web app",
            ExitCode.CONFIG,
        )
    answer = await _manage_watchers(client, token, org_slug, "trigger", watcher_id)
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
        f"the server does not know this device ({worker_id}) yet: it registers on its first "
        "poll, so start the agent once (`device-agent run --once`), then try again",
        ExitCode.CONFIG,
    )


async def _pinned_device(
    client: httpx.AsyncClient, token: str, org_slug: str, watcher_id: str
) -> str | None:
    body = await _manage_watchers(client, token, org_slug, "get", watcher_id)
    nested = body.get("watcher")
    watcher: dict[str, Any] = nested if isinstance(nested, dict) else body
    pinned = watcher.get("device_worker_id")
    if pinned is None and "device_worker_id" not in watcher:
        raise AccountError(
            f"cannot confirm that watcher {watcher_id} is pinned to this device (the server did "
            "not say where it is pinned), so it was not triggered: run `device-agent login` to "
            "get a device-bound token, whose Run now route checks the pinning itself",
            ExitCode.CONFIG,
        )
    return pinned if isinstance(pinned, str) else None


async def _manage_watchers(
    client: httpx.AsyncClient, token: str, org_slug: str, action: str, watcher_id: str
) -> dict[str, Any]:
    """The server's tool proxy for watchers (the same tool its MCP clients call)."""
    response = await send(
        client,
        "POST",
        f"/api/{org_slug}/manage_watchers",
        bearer=token,
        json={"action": action, "watcher_id": watcher_id},
    )
    if response.status_code != 200:
        raise _refused(response, "watcher", watcher_id)
    return body_of(response)


def _triggered(body: dict[str, Any], *, route: str) -> Triggered:
    status = body.get("status")
    return Triggered(
        run_id=body.get("run_id"),
        status=status if isinstance(status, str) else "unknown",
        already_queued=body.get("already_queued") is True,
        route=route,
    )


def _refused(response: Reply, lane: str, item_id: str) -> AccountError:
    said = error_text(response)
    if said == _NOT_AN_ID:
        return _not_an_id(item_id, lane)
    if response.status_code == 403 and "not pinned" in said:
        return AccountError(
            f"{lane} {item_id} is pinned to another device ({said}): trigger it from that device, "
            f"or pin it to this one in the web app",
            ExitCode.CONFIG,
        )
    if response.status_code == 404 and "poll first" in said:
        return AccountError(
            "the server does not know this device yet: start the agent once "
            "(`device-agent run --once`), then try again",
            ExitCode.CONFIG,
        )
    return fail(
        response, f"Run now for {lane} {item_id}", fix="check the id in the web app and try again"
    )
