"""The benchmark's baseline: the least a device agent can do per run, written by hand.

    python bench/minimal_loop.py URL TOKEN WORKER_ID CONCURRENCY [JOURNAL]

Poll -> heartbeat -> spawn `cat` with the prompt on stdin -> complete, in
CONCURRENCY asyncio tasks sharing one httpx client. No journal, no status
file, no logs, no retries: a floor to compare device-agent with, not an agent.

With JOURNAL (a file path), it also keeps the two records device-agent's rules
need on disk, as SQLite commits waiting for the disk on one thread: the claim
before `cat` starts, the result before it is sent. The floor of an agent that
never loses a result nor runs one twice.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
import time

import httpx

KIND = "command"


class Journal:
    """Two fsync'd commits a run, on one thread at a time, as device-agent's journal."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS runs (run_id PRIMARY KEY, output)")
        self._lock = threading.Lock()

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(sql, args)
            self._db.execute("COMMIT")

    async def claim(self, run_id: int) -> None:
        await asyncio.to_thread(self._write, "INSERT INTO runs VALUES (?, NULL)", (run_id,))

    async def result(self, run_id: int, output: str) -> None:
        sql = "UPDATE runs SET output = ? WHERE run_id = ?"
        await asyncio.to_thread(self._write, sql, (output, run_id))


async def worker(http: httpx.AsyncClient, worker_id: str, journal: Journal | None) -> None:
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
        if journal is not None:
            await journal.claim(run_id)
        await http.post("/api/workers/heartbeat", json={"run_id": run_id, "worker_id": worker_id})
        started = time.monotonic()
        cat = await asyncio.create_subprocess_exec(
            "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        output, _ = await cat.communicate(claim["payload"]["watcher"]["prompt"].encode())
        if journal is not None:
            await journal.result(run_id, output.decode())
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


async def main(
    url: str, token: str, worker_id: str, concurrency: int, journal: str | None = None
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    kept = Journal(journal) if journal else None
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        await asyncio.gather(*(worker(http, worker_id, kept) for _ in range(concurrency)))


if __name__ == "__main__":
    path = sys.argv[5] if len(sys.argv) > 5 else None
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), path))
