"""Tokens and devices: who may call, and the machines that poll."""

from __future__ import annotations

import copy
import secrets
import uuid

from device_agent.devserver.state.core import StateCore
from device_agent.devserver.state.records import DEFAULT_SCOPES, DeviceRecord, TokenRecord


class Devices(StateCore):
    """Tokens (PATs, OAuth access tokens, run session tokens) and device rows."""

    def add_token(
        self,
        scopes: str = DEFAULT_SCOPES,
        bound_worker_id: str | None = None,
        *,
        token: str | None = None,
        expires_in: float | None = None,
        oauth_client_id: str | None = None,
        session_run_id: int | None = None,
    ) -> str:
        """Create a PAT (`owl_pat_` + 32 base64url chars unless `token` is given).

        `expires_in` seconds from now; None never expires (like a local-init PAT).
        """
        value = token or "owl_pat_" + secrets.token_urlsafe(24)
        with self.lock:
            now = self.clock()
            self._tokens[value] = TokenRecord(
                token=value,
                scopes=frozenset(scopes.split()),
                bound_worker_id=bound_worker_id,
                created_at=now,
                expires_at=None if expires_in is None else now + expires_in,
                oauth_client_id=oauth_client_id,
                session_run_id=session_run_id,
            )
        return value

    def revoke_token(self, token: str) -> None:
        with self.lock:
            self._tokens.pop(token, None)

    def revoke_bound_tokens(self, worker_id: str) -> None:
        with self.lock:
            for value in [t.token for t in self._tokens.values() if t.bound_worker_id == worker_id]:
                del self._tokens[value]

    def device(self, worker_id: str) -> DeviceRecord | None:
        with self.lock:
            device = self._devices.get(worker_id)
            return copy.deepcopy(device) if device else None

    def devices(self) -> list[DeviceRecord]:
        with self.lock:
            return [copy.deepcopy(d) for d in self._devices.values()]

    def token(self, value: str) -> TokenRecord | None:
        return self._tokens.get(value)

    def live_token(self, value: str) -> TokenRecord | None:
        """The token if it exists and has not expired."""
        record = self._tokens.get(value)
        if record is None or (record.expires_at is not None and record.expires_at <= self.clock()):
            return None
        return record

    def live_tokens(self) -> list[TokenRecord]:
        """Every token that works now, as copies: what a test counts to find a leaked one."""
        with self.lock:
            return [copy.deepcopy(t) for t in self._tokens.values() if self.live_token(t.token)]

    def find_device(self, worker_id: str) -> DeviceRecord | None:
        return self._devices.get(worker_id)

    def live_devices(self) -> list[DeviceRecord]:
        return list(self._devices.values())

    def ensure_device(self, worker_id: str) -> DeviceRecord:
        """The device row for `worker_id`, created (with its check-in watcher) if new."""
        device = self._devices.get(worker_id)
        if device is None:
            device = DeviceRecord(
                id=str(uuid.uuid4()),
                worker_id=worker_id,
                platform=None,
                app_version=None,
                label=None,
                capabilities={},
                created_at=self.clock(),
            )
            self._devices[worker_id] = device
            if self.create_checkin_watcher and self.lane == "watcher":  # a Lobu 1.6.0 habit
                self._add_checkin_watcher(device)
        return device

    def _add_checkin_watcher(self, device: DeviceRecord) -> None:
        # What a real server provisions on a new device's first poll
        # (docs/protocol.md, "Poll and claim"):
        # pinned, no agent_kind, nothing queued.
        self._new_watcher(
            name="Daily check-in",
            slug="daily-check-in",
            prompt="Give me a short check-in: what changed since yesterday, what needs me today.",
            agent_kind=None,
            agent_id="default",
            execution_config=None,
            device_id=device.id,
            status="active",
            notification_channel="canvas",
            notification_priority="normal",
            schedule="0 9 * * *",
        )
