"""The dev server's MCP stand-in speaks MCP's Streamable HTTP transport where a CLI looks.

A notification (no `id`) is accepted with 202 and no body, and a method other
than POST is answered 405 with `Allow: POST`, as the transport specifies; an
MCP client that sees anything else may treat the server as broken.
"""

from __future__ import annotations

import httpx
import pytest

INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


@pytest.mark.parametrize("path", ["/mcp", "/mcp/dev"])
def test_a_notification_is_accepted_with_202_and_no_body(client: httpx.Client, path: str) -> None:
    answer = client.post(path, json=INITIALIZED)
    assert answer.status_code == 202
    assert answer.content == b""
    assert "content-type" not in answer.headers


def test_a_client_response_is_accepted_with_202_too(client: httpx.Client) -> None:
    answer = client.post("/mcp", json={"jsonrpc": "2.0", "result": {}})
    assert (answer.status_code, answer.content) == (202, b"")


def test_a_request_with_an_id_is_still_answered(client: httpx.Client) -> None:
    answer = client.post("/mcp", json={"jsonrpc": "2.0", "id": 7, "method": "tools/list"})
    assert answer.status_code == 200
    assert answer.json()["id"] == 7
    assert {tool["name"] for tool in answer.json()["result"]["tools"]} == {"query_sdk", "run_sdk"}


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
@pytest.mark.parametrize("path", ["/mcp", "/mcp/dev"])
def test_a_method_other_than_post_is_405_with_allow_post(
    client: httpx.Client, method: str, path: str
) -> None:
    answer = client.request(method, path)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert "use POST" in answer.json()["error"]


def test_the_endpoint_still_asks_for_credentials_first(client: httpx.Client) -> None:
    answer = client.get("/mcp", headers={"Authorization": ""})
    assert answer.status_code == 401
