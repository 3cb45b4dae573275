"""A CLI that prints 100 MiB on stdout and 2 MiB on stderr, then fails with a last word."""

import sys

MIB = 1 << 20


def main():
    chunk = b"x" * MIB
    out = sys.stdout.buffer
    for _ in range(100):
        out.write(chunk)
    out.flush()
    sys.stderr.buffer.write(b"e" * (2 * MIB))
    sys.stderr.buffer.write(b"\nfatal: out of widgets\n")
    return 3


if __name__ == "__main__":
    sys.exit(main())
