"""`python -m device_agent.devserver`: run the dev server in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from device_agent.devserver import serve_forever


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A Lobu-compatible local server (watcher lane).")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8787, help="port (0 = any free port)")
    parser.add_argument("--no-demo", action="store_true", help="do not seed demo watchers")
    parser.add_argument(
        "--worker-id", default=None, help="worker_id the demo watchers are pinned to"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve_forever(
                args.host, args.port, seed_demo=not args.no_demo, worker_id=args.worker_id
            )
        )


if __name__ == "__main__":
    main()
