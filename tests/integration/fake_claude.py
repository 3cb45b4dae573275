"""A stand-in for `claude -p PROMPT --output-format json` with Claude Code's documented output.

Markers in the prompt choose the behaviour:
  [[hang]]   record our PID and sleep (to be killed by the agent)
  [[error]]  exit 0 with `is_error: true` (Claude does this on API errors)
  [[slow]]   take FAKE_SLOW_SECONDS (default 1) before answering
  [[sleep=S]] take S seconds before answering
Every invocation leaves a file in $FAKE_CLI_LOG so tests can count executions.
"""

import json
import os
import re
import sys
import time
import uuid


def prompt_from_argv(argv: list[str]) -> str:
    if "-p" in argv:
        index = argv.index("-p") + 1
        if index < len(argv) and not argv[index].startswith("--"):
            return argv[index]
    if "--print" in argv:
        index = argv.index("--print") + 1
        if index < len(argv):
            return argv[index]
    return sys.stdin.read()


def main() -> int:
    if sys.argv[1:] == ["--version"]:
        print("2.1.197 (Claude Code)")
        return 0
    prompt = prompt_from_argv(sys.argv[1:])
    log_dir = os.environ.get("FAKE_CLI_LOG")
    if log_dir:
        final = os.path.join(log_dir, f"{time.time_ns()}-{os.getpid()}.json")
        with open(final + ".tmp", "w") as f:
            json.dump({"argv": sys.argv[1:], "prompt": prompt, "pid": os.getpid()}, f)
        os.replace(final + ".tmp", final)  # readers never see half a record
    if "[[hang]]" in prompt:
        time.sleep(3600)
    if "[[slow]]" in prompt:
        time.sleep(float(os.environ.get("FAKE_SLOW_SECONDS", "1")))
    pause = re.search(r"\[\[sleep=([0-9.]+)\]\]", prompt)
    if pause:
        time.sleep(float(pause.group(1)))
    first_line = prompt.strip().splitlines()[0] if prompt.strip() else ""
    is_error = "[[error]]" in prompt
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": is_error,
        "result": "API Error: 529 Overloaded" if is_error else f"Summary: {first_line}",
        "session_id": str(uuid.uuid4()),
        "num_turns": 1,
        "duration_ms": 12,
        "total_cost_usd": 0.0123,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
