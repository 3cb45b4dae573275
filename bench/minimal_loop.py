"""The benchmark's baseline: the least a device agent can do per run, written by hand.

    python bench/minimal_loop.py URL TOKEN WORKER_ID CONCURRENCY

Poll -> heartbeat -> spawn `cat` with the prompt on stdin -> complete, in
CONCURRENCY asyncio tasks sharing one httpx client. No journal, no status
file, no logs, no retries: a floor to compare device-agent with, not an agent.
"""

from __future__ import annotations

import asyncio
import sys
import time

import httpx

KIND = "command"


async def worker(http: httpx.AsyncClient, worker_id: str) -> None:
    body = {
        "worker_id": worker_id,
        "platform": "headless",
        "app_version": "1.0.0",
        "agent_kinds": [KIND],
        "capacity_available": 1,
    }
    while True:
        claim = (await http.post("/api/workers/poll", json=body)).json()
        if "run_id" not in claim:
            await asyncio.sleep(min(float(claim.get("next_poll_seconds", 1)), 0.2))
            continue
        run_id = claim["run_id"]
        await http.post("/api/workers/heartbeat", json={"run_id": run_id, "worker_id": worker_id})
        started = time.monotonic()
        cat = await asyncio.create_subprocess_exec(
            "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        output, _ = await cat.communicate(claim["payload"]["watcher"]["prompt"].encode())
        await http.post(
            f"/api/workers/me/runs/{run_id}/complete-watcher",
            json={
                "worker_id": worker_id,
                "output": output.decode(),
                "error": None,
                "duration_ms": int(1000 * (time.monotonic() - started)),
                "exit_code": cat.returncode,
                "exit_signal": None,
                "exit_reason": "ok",
            },
        )


async def main(url: str, token: str, worker_id: str, concurrency: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        await asyncio.gather(*(worker(http, worker_id) for _ in range(concurrency)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
