"""Bring the loopback interface up, then become the program named on the command line.

    unshare -n python -m tests.realcli.netns <program> <args...>

A new network namespace has only `lo`, and it is down: nothing, not even loopback,
answers until it is up. This does what `ip link set lo up` does (SIOCSIFFLAGS with
IFF_UP), so that the suite does not need iproute2, then execs the program (setpriv
or unshare, to become an unprivileged user) in the same namespace.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import sys

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


if __name__ == "__main__":
    loopback_up()
    os.execvp(sys.argv[1], sys.argv[1:])  # noqa: S606 - argv as given, no shell
