"""Closing an asyncio server that may still be serving connections.

Shared by the control socket (`control.py`) and the dev server's HTTP
(`devserver/http.py`): both track the task of each connection they serve.
"""

from __future__ import annotations

import asyncio


async def close_server(server: asyncio.Server, connections: set[asyncio.Task[None]]) -> None:
    """Stop listening, cancel the connections still being served, and wait for all of it.

    `wait_closed` waits for every open connection, so an idle one (a keep-alive
    HTTP client, a control client that never writes) would hold it open for ever.
    """
    server.close()
    for task in list(connections):
        task.cancel()
    await asyncio.gather(*connections, return_exceptions=True)
    await server.wait_closed()
