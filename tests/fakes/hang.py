"""A CLI that hangs after starting a grandchild that ignores SIGTERM and holds no pipe.

FAKE_MODE: hang | hang_ignore_term (the leader ignores SIGTERM too) |
exit_early (the leader exits 0 at once, leaving the grandchild behind) |
exit_early_holding_pipe (the grandchild keeps our stdout open)
"""

import json
import os
import signal
import subprocess
import sys

from _report import report

SLEEPER = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"


def main():
    mode = os.environ.get("FAKE_MODE", "hang")
    if mode == "hang_ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    holds_pipe = mode == "exit_early_holding_pipe"
    grandchild = subprocess.Popen(
        [sys.executable, "-c", SLEEPER],
        stdin=subprocess.DEVNULL,
        stdout=None if holds_pipe else subprocess.DEVNULL,
        stderr=None if holds_pipe else subprocess.DEVNULL,
    )
    print(json.dumps({"pid": os.getpid(), "grandchild": grandchild.pid}), flush=True)
    report(grandchild=grandchild.pid)
    if mode.startswith("exit_early"):
        os._exit(0)  # no wait for the grandchild: it is left running in the background
    signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
