"""Re-exports for the tests that still import from here; the servers live in
tests/support/servers.py."""

from tests.support.servers import (
    ANSWER,
    Loopback,
    answer_every_request,
    half_an_answer,
    make_certificate,
    never_answer,
    never_read,
    refused_port,
    tls_server,
    without_proxies,
)

__all__ = [
    "ANSWER",
    "Loopback",
    "answer_every_request",
    "half_an_answer",
    "make_certificate",
    "never_answer",
    "never_read",
    "refused_port",
    "tls_server",
    "without_proxies",
]
