"""One root for the errors a user can hit, each carrying the exit code `cli.main` returns.

Exit codes are part of the user-facing contract: 0 did its job; 1 unexpected
internal error; 2 usage or configuration error; 3 authentication needed;
4 server unreachable.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class ExitCode(enum.IntEnum):
    OK = 0
    INTERNAL = 1
    CONFIG = 2
    AUTH = 3
    UNREACHABLE = 4


class DeviceAgentError(Exception):
    """A failure the message explains; `cli.main` prints it and exits with `exit_code`."""

    exit_code: ExitCode = ExitCode.INTERNAL  # a class default; an instance may say otherwise
    prefix: ClassVar[str] = ""  # how the one-line message on stderr starts

    def user_message(self) -> str:
        return f"{self.prefix}{self}"


class ConfigError(DeviceAgentError):
    """A setting is wrong. The message is one line a user can act on."""

    exit_code = ExitCode.CONFIG
    prefix = "configuration error: "
