"""A CLI that kills itself with $FAKE_SIGNAL (default SIGSEGV) after a line of output."""

import os
import signal
import sys


def main():
    print("about to crash", flush=True)
    sys.stderr.write("segfault coming\n")
    sys.stderr.flush()
    os.kill(os.getpid(), getattr(signal, os.environ.get("FAKE_SIGNAL", "SIGSEGV")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
