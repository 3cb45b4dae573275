"""Shared by the fakes: write what the fake saw to $FAKE_REPORT, for the test to inspect.

The test installs this file next to each fake it puts on PATH.
"""

import json
import os
import stat
import sys


def file_facts(path):
    """Mode of a file and of its directory, and its content as JSON (or text)."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        content = json.loads(text)
    except ValueError:
        content = text
    return {
        "path": os.path.abspath(path),
        "mode": oct(stat.S_IMODE(os.stat(path).st_mode)),
        "dir_mode": oct(stat.S_IMODE(os.stat(os.path.dirname(os.path.abspath(path))).st_mode)),
        "content": content,
    }


def report(**facts):
    path = os.environ.get("FAKE_REPORT")
    if not path:
        return
    facts.update(
        argv=sys.argv,
        env=dict(os.environ),
        cwd=os.getcwd(),
        pid=os.getpid(),
        pgid=os.getpgid(0),
        sid=os.getsid(0),
    )
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(facts, handle)
    os.replace(path + ".tmp", path)  # the test may poll for the file: never show half of it


def option(args, name, default=None):
    return args[args.index(name) + 1] if name in args else default
