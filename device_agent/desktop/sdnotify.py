"""Tell systemd how the agent is doing: READY, STOPPING, WATCHDOG and a STATUS line.

The protocol is one datagram of `KEY=value` lines to the Unix socket named in
`NOTIFY_SOCKET` (a name starting with `@` is in the abstract namespace). Under
anything but a `Type=notify` systemd unit the variable is absent and every
call here does nothing, so the agent can call it unconditionally.

The variables are taken out of the environment when read (as sd_notify's
`unset_environment` does), so the CLI agents we start cannot speak for us.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import MutableMapping
from typing import Final

from device_agent.logs import get_logger

log = get_logger(__name__)

ENV_SOCKET: Final = "NOTIFY_SOCKET"
ENV_WATCHDOG_USEC: Final = "WATCHDOG_USEC"
ENV_WATCHDOG_PID: Final = "WATCHDOG_PID"


class SystemdNotifier:
    """Sends notify datagrams; never raises and never blocks."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._warned = False

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> SystemdNotifier:
        """Read (and remove) NOTIFY_SOCKET and WATCHDOG_* from the environment."""
        env = os.environ if environ is None else environ
        address = env.pop(ENV_SOCKET, None) or None
        usec = env.pop(ENV_WATCHDOG_USEC, None)
        pid = env.pop(ENV_WATCHDOG_PID, None)
        watchdog = None
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog = int(usec)
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG pings: half what the unit allows, as systemd advises."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2_000_000

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *_status(status))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(*_status(text))

    def send(self, *lines: str) -> bool:
        """One datagram; False (and one warning) if it could not be sent."""
        if self.address is None or not lines:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto("\n".join(lines).encode(), target)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify systemd", socket=self.address, error=str(exc))
                self._warned = True
            return False
        return True

    async def keep_watchdog(self) -> None:
        """Ping the watchdog for as long as the event loop runs; run it as a task.

        It lives on the agent's own loop, so a loop that stops turning stops
        the pings and systemd restarts the agent: the point of the watchdog.
        """
        interval = self.watchdog_interval()
        if interval is None or not self.enabled:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(interval)


def _status(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return ("STATUS=" + " ".join(text.split())[:200],)
