"""`python -m device_agent.devserver`: run the dev server in the foreground."""

from __future__ import annotations

import argparse

from device_agent.devserver import add_dev_server_arguments, run_from_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A Lobu-compatible local server.")
    add_dev_server_arguments(parser)
    return run_from_arguments(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
