"""Fake `agy -p <prompt>` (Antigravity CLI), print mode.

agy is not published where its output could be checked; this follows the
headless form the upstream Lobu daemon drives: the prompt as the -p value,
the answer as text on stdout and exit 0; a failure as a message on stderr
and a non-zero exit.

The failure text is an assumption (no published output to copy); what the
profile relies on is only "stderr + non-zero exit".

FAKE_MODE: success | error
"""

import os
import sys

from _report import option, report


def main():
    args = sys.argv[1:]
    if args == ["--version"]:
        print("agy 1.0.0")
        return 0
    prompt = option(args, "-p")
    if prompt is None:
        print("fake agy: only print mode (-p <prompt>) is faked", file=sys.stderr)
        return 2
    report(prompt=prompt)
    mode = os.environ.get("FAKE_MODE", "success")
    if mode == "error":
        print("Error: not signed in. Run `agy` once interactively to sign in.", file=sys.stderr)
        return 1
    first_line = prompt.strip().splitlines()[0] if prompt.strip() else ""
    print(f"agy did: {first_line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
