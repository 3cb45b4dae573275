"""How an account/OAuth request fails, as one line a user can act on, with the CLI's exit code.

`device_agent.identity.http` raises them; the commands, "Run now" and token rotation catch them.
"""

from __future__ import annotations

from device_agent.errors import DeviceAgentError, ExitCode


class AccountError(DeviceAgentError):
    """A failed account/OAuth request, as one line a user can act on."""

    def __init__(
        self, message: str, exit_code: ExitCode | None = None, *, status: int | None = None
    ) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
        self.status = status  # the server's HTTP status, when the server answered


class UsageError(AccountError):
    exit_code = ExitCode.CONFIG


class AuthRefused(AccountError):
    exit_code = ExitCode.AUTH


class Unreachable(AccountError):
    exit_code = ExitCode.UNREACHABLE
