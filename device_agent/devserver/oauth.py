"""The OAuth device authorization grant (RFC 8628) with rotating refresh tokens.

What a real Lobu server keeps in `oauth_clients`, `oauth_device_codes` and
`oauth_tokens`, reduced to what a device needs: dynamic registration, the
device code a user approves or denies, the token endpoint's two grants, and
revocation. Error codes and descriptions are the real provider's
(docs/protocol.md, "Authentication and login"). Access tokens are stored as
the state's tokens, so every route accepts them like a PAT; they are never
bound to a worker_id.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Final

DEVICE_CODE_GRANT: Final = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_CODE_LIFETIME_SECONDS: Final = 900
POLL_INTERVAL_SECONDS: Final = 5
SLOW_DOWN_STEP_SECONDS: Final = 5
ACCESS_TOKEN_LIFETIME_SECONDS: Final = 24 * 3600
REFRESH_TOKEN_LIFETIME_SECONDS: Final = 30 * 24 * 3600
DEFAULT_SCOPE: Final = "device_worker:run mcp:read mcp:write profile:read"
_USER_CODE_ALPHABET: Final = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels: no words by accident


class OAuthError(Exception):
    """An RFC 6749 error answer: `error` code, description and HTTP status."""

    def __init__(self, code: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.code, "error_description": self.description}


@dataclass
class Client:
    client_id: str
    client_name: str
    grant_types: list[str]
    scope: str


@dataclass
class DeviceCode:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    expires_at: float
    interval: int = POLL_INTERVAL_SECONDS
    status: str = "pending"  # pending | approved | denied
    last_polled_at: float | None = None


@dataclass
class RefreshToken:
    client_id: str
    scope: str
    expires_at: float
    revoked: bool = False


@dataclass
class OAuthStore:
    """Registered clients, outstanding device codes and live refresh tokens."""

    clients: dict[str, Client] = field(default_factory=dict)
    device_codes: dict[str, DeviceCode] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    poll_interval: int = POLL_INTERVAL_SECONDS  # the `interval` a new device code asks for

    def register(self, metadata: dict[str, Any]) -> Client:
        grant_types = metadata.get("grant_types") or ["authorization_code", "refresh_token"]
        if not isinstance(grant_types, list) or not all(isinstance(g, str) for g in grant_types):
            raise OAuthError("invalid_client_metadata", "grant_types must be an array of strings")
        name = metadata.get("client_name")
        scope = metadata.get("scope")
        client = Client(
            client_id=secrets.token_urlsafe(16),
            client_name=name if isinstance(name, str) else "",
            grant_types=grant_types,
            scope=scope if isinstance(scope, str) and scope.strip() else DEFAULT_SCOPE,
        )
        with self.lock:
            self.clients[client.client_id] = client
        return client

    def start_device_flow(self, client_id: Any, scope: Any, now: float) -> DeviceCode:
        client = self._client(client_id)
        if DEVICE_CODE_GRANT not in client.grant_types:
            raise OAuthError("unauthorized_client", "Client does not support device_code grant")
        code = DeviceCode(
            device_code=secrets.token_urlsafe(32),
            user_code=_user_code(),
            client_id=client.client_id,
            scope=scope if isinstance(scope, str) and scope.strip() else client.scope,
            expires_at=now + DEVICE_CODE_LIFETIME_SECONDS,
            interval=self.poll_interval,
        )
        with self.lock:
            self.device_codes[code.device_code] = code
        return code

    def decide(self, user_code: str, approve: bool, now: float) -> bool:
        """The user's answer on the verification page; False if no such pending code."""
        with self.lock:
            for code in self.device_codes.values():
                if code.user_code == user_code and code.status == "pending":
                    if code.expires_at <= now:
                        return False
                    code.status = "approved" if approve else "denied"
                    return True
        return False

    def exchange_device_code(self, params: dict[str, Any], now: float) -> DeviceCode:
        """The approved device code, consumed; else the OAuthError the poller gets."""
        device_code = params.get("device_code")
        if not isinstance(device_code, str) or not device_code:
            raise OAuthError("invalid_request", "Missing device_code")
        self._client(params.get("client_id"))
        with self.lock:
            code = self.device_codes.get(device_code)
            if code is None:
                raise OAuthError("invalid_grant", "Unknown device_code")
            if code.client_id != params.get("client_id"):
                raise OAuthError("invalid_grant", "Client ID mismatch")
            if code.expires_at <= now:
                raise OAuthError("expired_token", "Device code has expired")
            polled_too_soon = (
                code.last_polled_at is not None and now - code.last_polled_at < code.interval
            )
            code.last_polled_at = now
            if code.status == "approved":
                del self.device_codes[device_code]  # a code is exchanged once
                return code
            if code.status == "denied":
                raise OAuthError("access_denied", "User denied the authorization request")
            if polled_too_soon:
                # RFC 8628 §3.5: every slow_down adds 5 s to the interval.
                code.interval += SLOW_DOWN_STEP_SECONDS
                raise OAuthError("slow_down", "Polling too frequently; slow down")
            raise OAuthError("authorization_pending", "User has not yet authorized")

    def new_refresh_token(self, client_id: str, scope: str, now: float) -> str:
        value = secrets.token_urlsafe(32)
        with self.lock:
            self.refresh_tokens[value] = RefreshToken(
                client_id=client_id, scope=scope, expires_at=now + REFRESH_TOKEN_LIFETIME_SECONDS
            )
        return value

    def rotate_refresh_token(self, params: dict[str, Any], now: float) -> RefreshToken:
        """Revoke the presented refresh token and return what it granted (rotation)."""
        value = params.get("refresh_token")
        if not isinstance(value, str) or not value:
            raise OAuthError("invalid_request", "Missing refresh_token")
        client = self._client(params.get("client_id"))
        if "refresh_token" not in client.grant_types:
            raise OAuthError("unauthorized_client", "Client does not support refresh_token")
        with self.lock:
            record = self.refresh_tokens.get(value)
            if record is None or record.revoked or record.expires_at <= now:
                raise OAuthError("invalid_grant", "Invalid or expired refresh token")
            if record.client_id != client.client_id:
                raise OAuthError("invalid_grant", "Client ID mismatch")
            record.revoked = True
            return record

    def revoke_refresh_token(self, value: str, client_id: Any) -> bool:
        with self.lock:
            record = self.refresh_tokens.get(value)
            if record is None or record.revoked or record.client_id != client_id:
                return False
            record.revoked = True
            return True

    def _client(self, client_id: Any) -> Client:
        client = self.clients.get(client_id) if isinstance(client_id, str) else None
        if client is None:
            raise OAuthError("invalid_client", "Unknown client_id")
        return client


def _user_code() -> str:
    letters = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
    return f"{letters[:4]}-{letters[4:]}"
