"""One request and its answer, as `LobuClient` sends it: the interface and what its two
implementations share.

`http1.H1Exchange` is the one the agent uses: HTTP/1.1 on asyncio and h11, written
for one origin (its docstring says why). `httpx_exchange.HttpxExchange` keeps httpx
where it earns its keep: an HTTP proxy named by the environment (httpx honours
those), or a transport a test injects. Both answer with a `Reply`, and both fail
with `ExchangeTimeout` or `ExchangeError`, which `LobuClient` reads alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from typing import Protocol

Content = bytes | AsyncIterable[bytes] | None


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # names in lower case
    reason: str
    content: bytes


class AnswerTooLarge(Exception):
    """An answer body past its route's cap: read no further."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ExchangeError(Exception):
    """No usable answer: the connection could not be made, broke, or carried no HTTP."""


class ExchangeTimeout(ExchangeError):
    """No answer in time: the server may still have acted on the request. The message
    names the step that timed out (ConnectTimeout, ReadTimeout, WriteTimeout)."""


class Exchange(Protocol):
    async def send(
        self,
        method: str,
        path: str,
        content: Content,
        headers: Mapping[str, str],
        *,
        read_seconds: float,
        connect_seconds: float,
        cap: int,
    ) -> Reply:
        """Send one request and read its answer, refusing a body over `cap` bytes.
        `read_seconds` bounds each read and write, `connect_seconds` the connect."""

    def drop_idle(self) -> None:
        """Close the connections kept for reuse (the machine slept)."""

    async def aclose(self) -> None: ...


def framing(content: Content, headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """The body's length header, as httpx would add it, unless the caller gave one."""
    if any(name.lower() in ("content-length", "transfer-encoding") for name in headers):
        return []
    if content is None or isinstance(content, bytes):
        return [(b"Content-Length", str(len(content or b"")).encode())]
    return [(b"Transfer-Encoding", b"chunked")]


def phrase(status: int) -> str:
    """The standard reason phrase of `status`, for an answer that gave none."""
    import http  # rare (servers send their phrase), and its enums cost ~1 ms to import

    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


async def read_capped(
    chunks: AsyncIterable[bytes], declared: str | None, cap: int, status: int
) -> bytes:
    """The whole body, read as it comes and refused past `cap`: never buffered whole.
    `declared`: the answer's Content-Length, if it has one."""
    declared = declared or ""
    if declared.isascii() and declared.isdigit() and int(declared) > cap:
        raise AnswerTooLarge(f"answer of {declared} bytes refused (the cap is {cap})", status)
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > cap:
            raise AnswerTooLarge(f"answer over {cap} bytes refused", status)
        parts.append(chunk)
    return b"".join(parts)
