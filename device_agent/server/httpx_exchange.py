"""`Exchange` through an `httpx.AsyncClient`: for an HTTP proxy named by the environment,
which httpx honours, and for a transport a test injects. Imported only then: httpx
costs ~35 ms to import (device_agent/server/http1.py says what the agent uses otherwise)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from device_agent.server.exchange import (
    Content,
    ExchangeError,
    ExchangeTimeout,
    Reply,
    read_capped,
)


class HttpxExchange:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self._http = client

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
        timeouts = httpx.Timeout(read_seconds, connect=connect_seconds)
        try:
            return await self._send(method, path, content, headers, timeouts, cap)
        except httpx.TimeoutException as exc:
            raise ExchangeTimeout(type(exc).__name__) from exc
        except httpx.HTTPError as exc:  # a transport error, or e.g. a proxy's broken gzip
            raise ExchangeError(str(exc) or type(exc).__name__) from exc

    async def _send(
        self,
        method: str,
        path: str,
        content: Content,
        headers: Mapping[str, str],
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

    def drop_idle(self) -> None:
        """Nothing: httpx has no public way to drop its pool's connections. A request on a
        dead one times out and is tried again, like any request that got no answer."""

    async def aclose(self) -> None:
        await self._http.aclose()
