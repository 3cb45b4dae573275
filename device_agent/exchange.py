"""One request and its answer, for `LobuClient`: straight through httpcore's pool.

Why not through `httpx.AsyncClient`: its client layer — building a `Request`,
merging and re-parsing the URL, the cookie jar, the auth and redirect
generators, the `Response` model and its decoders — cost ~0.45 ms of CPU a
request on loopback, where the whole exchange through httpcore costs ~0.9 ms;
a run makes three requests (poll, heartbeat, completion). `LobuClient` needs
none of it: one origin, no cookies, no redirects, JSON both ways.

`DirectExchange` builds httpcore's request from parts parsed once, on
`netio.AsyncioBackend`. `HttpxExchange` keeps httpx where it earns its keep:
an HTTP proxy named by the environment (httpx honours those), or a transport
a test injects. Both answer with a `Reply`; a failure is httpcore's or httpx's
own exception, which `LobuClient` reads alike.
"""

from __future__ import annotations

import http
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

import httpcore
import httpx

from device_agent.netio import connection_pool

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


class Exchange(Protocol):
    async def send(
        self,
        method: str,
        path: str,
        content: Content,
        headers: Mapping[str, str],
        *,
        timeouts: httpx.Timeout,
        cap: int,
    ) -> Reply:
        """Send one request and read its answer, refusing a body over `cap` bytes."""

    async def aclose(self) -> None: ...


class DirectExchange:
    """Requests to one origin through an httpcore pool on the asyncio backend."""

    def __init__(self, origin: str, *, verify: Any) -> None:
        url = httpx.URL(origin)
        self._scheme = url.raw_scheme
        self._host = url.raw_host
        self._port = url.port
        self._host_header = url.netloc  # what httpx sends: the port only when not the default
        self._base_path = url.raw_path.rstrip(b"/")  # a server under a path (https://h/lobu)
        # SSL_CERT_FILE/DIR honoured, as httpx honours them
        self._pool = connection_pool(httpx.create_ssl_context(verify=verify))

    async def send(
        self,
        method: str,
        path: str,
        content: Content,
        headers: Mapping[str, str],
        *,
        timeouts: httpx.Timeout,
        cap: int,
    ) -> Reply:
        raw_headers = [
            (b"Host", self._host_header),
            *_encoded(headers),
            *_framing(content, headers),
        ]
        request = httpcore.Request(
            method.encode("ascii"),
            httpcore.URL(
                scheme=self._scheme,
                host=self._host,
                port=self._port,
                target=self._base_path + path.encode(),
            ),
            headers=raw_headers,
            content=content or b"",
            extensions={"timeout": timeouts.as_dict()},
        )
        response = await self._pool.handle_async_request(request)
        try:
            reply_headers = {
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in response.headers
            }
            reason = response.extensions.get("reason_phrase", b"")
            stream = cast(AsyncIterable[bytes], response.stream)  # an async pool's: async
            body = await read_capped(
                stream, reply_headers.get("content-length"), cap, response.status
            )
            return Reply(
                response.status,
                reply_headers,
                reason.decode("latin-1") if reason else _phrase(response.status),
                body,
            )
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._pool.aclose()


class HttpxExchange:
    """Requests through an `httpx.AsyncClient` (a proxy from the environment, or a test's
    transport)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._http = client

    async def send(
        self,
        method: str,
        path: str,
        content: Content,
        headers: Mapping[str, str],
        *,
        timeouts: httpx.Timeout,
        cap: int,
    ) -> Reply:
        request = self._http.build_request(
            method, path, content=content, headers=headers, timeout=timeouts
        )
        response = await self._http.send(request, stream=True)
        try:
            reply_headers = {name.lower(): value for name, value in response.headers.items()}
            body = await read_capped(
                response.aiter_bytes(),
                reply_headers.get("content-length"),
                cap,
                response.status_code,
            )
            return Reply(response.status_code, reply_headers, response.reason_phrase, body)
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()


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


def _encoded(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("ascii"), value.encode("latin-1")) for name, value in headers.items()]


def _framing(content: Content, headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """The body's length header, as httpx would add it, unless the caller gave one."""
    if any(name.lower() in ("content-length", "transfer-encoding") for name in headers):
        return []
    if content is None or isinstance(content, bytes):
        return [(b"Content-Length", str(len(content or b"")).encode())]
    return [(b"Transfer-Encoding", b"chunked")]


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""
