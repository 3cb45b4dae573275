"""What every httpx client of the agent is built with, so a request costs only the request.

Two costs the profile of a run showed, neither of which buys anything:

- httpcore asks `import sniffio` on every request to learn which async
  library runs it (for its locks and cancellation shields, which stay on anyio
  whatever network backend it is given). Without sniffio installed each ask is
  a failed search of the whole `sys.path` (~50 file look-ups per request).
  Recording the miss once makes every later `import sniffio` fail at once, as
  it would anyway; httpcore then assumes asyncio, which is what runs the agent.
- Building a client loads the system's CA store (~25 ms) even for an
  `http://` server, which never speaks TLS to us: redirects are not followed.

And one cost of httpcore's default network backend, anyio: `transport_for` gives
a client our asyncio one instead (device_agent/server/netio.py says why).
"""

from __future__ import annotations

import importlib.util
import os
import ssl
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx


def remember_missing_sniffio() -> None:
    """Make a missing `sniffio` cost one look-up per process, not one per request."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]  # "import sniffio" -> ImportError


def tls_for(origin: str) -> ssl.SSLContext | bool:
    """httpx's `verify` for a client of `origin`: the default for https, and for plain
    http a context that trusts no certificate, so it is cheap to build and could
    never accept a server if TLS were ever spoken through it."""
    if origin.startswith("http://"):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, with no CA loaded
    return True


def transport_for(origin: str) -> httpx.AsyncBaseTransport | None:
    """The transport for a client of `origin`: httpx's on our asyncio network backend,
    or None (httpx's default) when the environment names an HTTP proxy — httpx routes
    through such a proxy only when it builds the transport itself."""
    if proxy_configured():
        return None
    from device_agent.server.netio import AsyncioTransport  # imports httpx: only for its clients

    return AsyncioTransport(verify=tls_for(origin))


def proxy_configured() -> bool:
    """Whether httpx would send some request through a proxy (HTTP_PROXY, HTTPS_PROXY,
    ALL_PROXY, or the system's settings on macOS and Windows): the same look-up httpx makes."""
    if sys.platform not in ("darwin", "win32") and not any(
        name.lower().endswith("_proxy") for name in os.environ
    ):
        return False  # all getproxies() reads here: skipped, urllib.request costs ~5 ms to import
    import urllib.request

    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))
