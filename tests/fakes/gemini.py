"""Fake `gemini --output-format json` (Gemini CLI 0.61), headless because stdin is not a TTY.

Success: {"session_id", "response", "stats"} on stdout, exit 0. Failure: the
pretty-printed {"session_id", "error": {type, message, code}} on *stderr* and a
non-zero exit — 41 for a missing auth method (seen on the real CLI), or the
"[ERROR] " prefixed form with exit 1 for an API error inside the turn.

FAKE_MODE: success | auth_error | api_error
"""

import json
import os
import sys

from _report import file_facts, option, report

SESSION = "52bf10c2-376c-4a38-8ef6-79cb4be7b38d"


def main():
    args = sys.argv[1:]
    if option(args, "--output-format") != "json":
        print("fake gemini: expected --output-format json", file=sys.stderr)
        return 42
    prompt = sys.stdin.read()
    # The system settings file, when named, overrides the project's (Gemini CLI docs,
    # "Settings files": GEMINI_CLI_SYSTEM_SETTINGS_PATH).
    system = os.environ.get("GEMINI_CLI_SYSTEM_SETTINGS_PATH")
    project = os.path.join(".gemini", "settings.json")
    report(
        prompt=prompt,
        settings=file_facts(system) if system else None,
        project_settings=file_facts(project),
    )
    mode = os.environ.get("FAKE_MODE", "success")
    if mode == "auth_error":
        error = {
            "type": "Error",
            "code": 41,
            "message": (
                "Please set an Auth method in your /home/u/.gemini/settings.json or specify one of "
                "the following environment variables before running: GEMINI_API_KEY, "
                "GOOGLE_GENAI_USE_VERTEXAI, GOOGLE_GENAI_USE_GCA"
            ),
        }
        sys.stderr.write(json.dumps({"session_id": SESSION, "error": error}, indent=2) + "\n")
        return 41
    if mode == "api_error":
        sys.stderr.write("Loaded cached credentials.\n")
        error = {"type": "ApiError", "message": "[API Error: quota exceeded]", "code": 429}
        payload = json.dumps({"session_id": SESSION, "error": error}, indent=2)
        sys.stderr.write(f"[ERROR] {payload}\n")
        return 1
    # Gemini CLI 0.61's SessionMetrics (packages/core telemetry/uiTelemetry): per model, its
    # API calls and tokens (`input` is `prompt` less `cached`); no cost.
    stats = {
        "models": {
            "gemini-2.5-pro": {
                "api": {"totalRequests": 2, "totalErrors": 0, "totalLatencyMs": 4210},
                "tokens": {
                    "input": 800,
                    "prompt": 900,
                    "candidates": 120,
                    "total": 1090,
                    "cached": 100,
                    "thoughts": 40,
                    "tool": 30,
                },
                "roles": {},
            }
        },
        "tools": {
            "totalCalls": 0,
            "totalSuccess": 0,
            "totalFail": 0,
            "totalDurationMs": 0,
            "totalDecisions": {"accept": 0, "reject": 0, "modify": 0, "auto_accept": 0},
            "byName": {},
        },
        "files": {"totalLinesAdded": 0, "totalLinesRemoved": 0},
    }
    first_line = prompt.strip().splitlines()[0]
    print(
        json.dumps(
            {"session_id": SESSION, "response": f"Gemini did: {first_line}", "stats": stats},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
