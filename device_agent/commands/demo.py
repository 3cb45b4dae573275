"""`device-agent demo` and `device-agent dev-server`: try it offline."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from device_agent.errors import ExitCode


def cmd_demo(args: argparse.Namespace) -> int:
    from device_agent.demo import run_demo

    return run_demo()


def cmd_dev_server(args: argparse.Namespace) -> int:
    from device_agent.devserver import serve_forever

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve_forever(
                args.host, args.port, seed_demo=not args.no_seed, worker_id=args.worker_id
            )
        )
    return ExitCode.OK
