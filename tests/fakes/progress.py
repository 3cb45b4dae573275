"""A user's own command (the `command` profile) that reports progress as it works.

Prints one line per step, flushed, as a long-running script does; then waits
until the file named by $FAKE_RELEASE exists (the test says when it may end),
and prints its result.
"""

import os
import sys
import time

from _report import log_execution

prompt = sys.stdin.read()
log_execution(prompt)
for step in (1, 2, 3):
    print(f"step {step} of 3", flush=True)
release = os.environ.get("FAKE_RELEASE", "")
while release and not os.path.exists(release):
    time.sleep(0.01)
print("all done", flush=True)
