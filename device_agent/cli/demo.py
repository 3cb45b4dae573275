"""`device-agent demo` and `device-agent dev-server`: try it offline."""

from __future__ import annotations

import argparse


def cmd_demo(args: argparse.Namespace) -> int:
    from device_agent.demo.session import run_demo

    return run_demo()


def add_dev_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The dev server's command-line flags (shared by `device-agent dev-server` and
    `python -m device_agent.devserver`)."""
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8787, help="port (0 = any free port)")
    parser.add_argument(
        "--no-seed",
        "--no-demo",  # the old spelling of `python -m device_agent.devserver`
        dest="no_seed",
        action="store_true",
        help="start without sample watchers",
    )
    parser.add_argument(
        "--worker-id", dest="worker_id", help="pin the sample watchers to this worker_id"
    )
    parser.add_argument(
        "--lane",
        choices=("watcher", "automation"),
        default="watcher",
        help="serve the watcher lane (Lobu 1.6.0) or the automation lane (current Lobu)",
    )
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=0.0,
        help="hold polls this long after start, as a booting server does (default 0)",
    )
    parser.add_argument(
        "--min-app-version",
        help="automation lane: answer 409 upgrade_required to polls below this x.y.z",
    )


def cmd_dev_server(args: argparse.Namespace) -> int:
    from device_agent.devserver import run_from_arguments

    return run_from_arguments(args)
