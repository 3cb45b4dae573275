"""A JSON request body built in pieces, so a CLI's large output is not copied whole twice.

httpx's `json=` makes the whole body one `str`, then one `bytes`: for a 4 MiB output that
is 8 MiB held at once beside the output itself. Here a long string value is encoded a
slice at a time into UTF-8 pieces that are sent one after the other, with the length
known up front. The bytes on the wire are exactly what `json=` sends (compact, UTF-8,
no NaN).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

LARGE: Final = 256 * 1024  # characters: a string value this long is sent in pieces
SLICE: Final = 64 * 1024  # characters per piece


def has_large_text(body: Mapping[str, Any]) -> bool:
    """Whether `body` holds a top-level string long enough to send in pieces."""
    return any(isinstance(value, str) and len(value) >= LARGE for value in body.values())


def pieces(body: Mapping[str, Any]) -> list[bytes]:
    """`body` as compact UTF-8 JSON, in pieces whose concatenation is the whole body."""
    out: list[bytes] = []
    separator = "{"
    for key, value in body.items():
        out.append(f"{separator}{_dumps(str(key))}:".encode())
        separator = ","
        if isinstance(value, str) and len(value) >= LARGE:
            out.append(b'"')
            # Each character is escaped on its own, so a string may be cut anywhere.
            out.extend(
                _dumps(value[at : at + SLICE])[1:-1].encode() for at in range(0, len(value), SLICE)
            )
            out.append(b'"')
        else:
            out.append(_dumps(value).encode())
    out.append(b"}" if body else b"{}")
    return out


class Body:
    """The pieces as an httpx request body, with the headers that go with it."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self._pieces = pieces(body)
        self.headers = _headers(sum(len(piece) for piece in self._pieces))

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece


def request_body(body: Mapping[str, Any]) -> tuple[bytes | Body, dict[str, str]]:
    """`body` as a request's content, and the headers that go with it: one `bytes`, or a
    large output in pieces."""
    if has_large_text(body):
        large = Body(body)
        return large, large.headers
    content = _dumps(body).encode()
    return content, _headers(len(content))


def _headers(length: int) -> dict[str, str]:
    return {"Content-Length": str(length), "Content-Type": "application/json"}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
