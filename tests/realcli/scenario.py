"""One real CLI driven through device-agent against the dev server, in one process tree.

    python -m tests.realcli.scenario <spec.json> <result.json>

The test (tests/realcli/test_real_clis.py) starts this in a loopback-only network
namespace, as an unprivileged user when it runs as root, so that everything — the
model stub, the dev server, `device-agent run --once` and the CLI it starts —
shares one loopback interface and no route leads anywhere else. The spec names
the executor profile, the folder with the CLI's installed binaries, a folder
this process owns, the lanes to run and, optionally, a user's own copy of the
profile to use instead of the shipped one; the result is JSON for the test to
assert on:

- per run: the dev server's record (status, reason, output), its exit reports
  (rounds), the session token the server gave it, the transcript the device
  uploaded for it (as the server stored it), and what the device's journal says
  the run cost (`device-agent history --run N --json`: its `usage`);
- every MCP request the dev server's stand-in received, with the bearer token;
- every request the model stub answered, and what the model did;
- the text of every file in the user's workdir each time the CLI asked the
  model anything (the CLI is running then): tokens must never appear there;
- the device token, and device-agent's stderr per run.

Runs: two automation runs (one the model completes in its first round, one it
completes only when nudged, in a resume round) and one watcher run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from device_agent.devserver import DevServer, DevState
from tests.realcli.clis import CLIS, user_setup
from tests.realcli.stubs import FORGET, STUBS

WORKER = "headless:realcli"
AGENT_TIMEOUT = 300.0  # a bound on a hung CLI, never a measure of speed


class WorkdirWatch:
    """The text of every file under the user's workdir, taken whenever the model is asked."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.snapshots: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def take(self) -> None:
        files: dict[str, str] = {}
        for path in self.root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                try:
                    files[str(path.relative_to(self.root))] = path.read_text(errors="replace")
                except OSError as exc:
                    files[str(path.relative_to(self.root))] = f"<unreadable: {exc}>"
        with self._lock:
            self.snapshots.append(files)


def main(spec_path: str, result_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    cli = CLIS[spec["profile"]]
    work = Path(spec["work"])
    home = work / "home"  # the user's home: their own setup of the CLI lives there
    repo = work / "repo"  # the user's project, the configured workdir of the runs
    (repo / ".git").mkdir(parents=True, exist_ok=True)
    (repo / "README.md").write_text("A user's project.\n", encoding="utf-8")
    watch = WorkdirWatch(repo)
    stub = STUBS[cli.api]()
    stub.on_request = watch.take
    stub.start()
    result: dict[str, Any] = {
        "profile": cli.profile,
        "version": cli.version,
        "uid": os.getuid(),
        "lanes": {},
    }
    try:
        env = _user_env(home, spec["bin_dirs"])
        env.update(user_setup(cli.profile, home, stub.url))
        for lane in spec["lanes"]:
            agent_home = work / f"agent-{lane}"
            _write_config(agent_home, repo)
            override = spec.get("profile_override")
            if override is not None:  # the user's own copy of the profile replaces ours
                path = agent_home / "config" / "executors" / f"{cli.profile}.toml"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(override, encoding="utf-8")
            runner = _automation if lane == "automation" else _watcher
            result["lanes"][lane] = runner(cli.profile, env, agent_home)
    finally:
        stub.stop()
    result["model_requests"] = [
        {"path": seen.path, "step": seen.step} for seen in stub.requests if seen.step
    ]
    result["model_paths"] = sorted({seen.path.split("?")[0] for seen in stub.requests})
    result["workdir_snapshots"] = watch.snapshots
    # Everything the CLI sent the model, for a failure's post-mortem (not asserted on).
    sent = [{"path": r.path, "headers": r.headers, "body": r.body} for r in stub.requests]
    (work / "model-requests.json").write_text(json.dumps(sent, indent=1), encoding="utf-8")
    Path(result_path).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


def _user_env(home: Path, bin_dirs: list[str]) -> dict[str, str]:
    """The environment of a user who runs device-agent: their HOME, the CLI on PATH."""
    home.mkdir(parents=True, exist_ok=True)
    keep = ("LANG", "LC_ALL", "TERM", "TMPDIR", "PYTHONPATH")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    node = Path(os.environ.get("REALCLI_NODE", "/usr/bin/node")).parent
    path = [*bin_dirs, str(node), "/usr/local/bin", "/usr/bin", "/bin"]
    env.update(
        HOME=str(home),
        USER=os.environ.get("USER", "realcli"),
        PATH=os.pathsep.join(dict.fromkeys(path)),
        PYTHONUNBUFFERED="1",
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
        NO_COLOR="1",
    )
    return env


def _write_config(agent_home: Path, repo: Path) -> None:
    config = agent_home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "heartbeat_seconds = 5\n"
        "max_backoff_seconds = 1\n"
        "[executor]\n"
        f"workdir = {json.dumps(str(repo))}\n"
        "mcp = true\n",
        encoding="utf-8",
    )


def _agent_once(
    profile: str, env: dict[str, str], agent_home: Path, url: str, token: str
) -> dict[str, Any]:
    """`device-agent run --once`: claims one run and sees it through, resume rounds included."""
    agent_env = {
        **env,
        "DEVICE_AGENT_HOME": str(agent_home),
        "DEVICE_AGENT_SERVER": url,
        "DEVICE_AGENT_TOKEN": token,
        "DEVICE_AGENT_WORKER_ID": WORKER,
    }
    done = subprocess.run(
        [sys.executable, "-m", "device_agent", "run", "--once", "--verbose", "--agent", profile],
        env=agent_env,
        cwd=str(agent_home),
        capture_output=True,
        text=True,
        timeout=AGENT_TIMEOUT,
        check=False,
    )
    return {"exit_code": done.returncode, "stderr": done.stderr[-20000:]}


def _usage(env: dict[str, str], agent_home: Path, run_id: int) -> dict[str, Any] | None:
    """What the device's journal says the run cost, as `device-agent history` shows it."""
    shown = subprocess.run(
        [sys.executable, "-m", "device_agent", "history", "--run", str(run_id), "--json"],
        env={**env, "DEVICE_AGENT_HOME": str(agent_home)},
        cwd=str(agent_home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if shown.returncode != 0:
        return {"history_failed": shown.stderr[-2000:]}
    usage = json.loads(shown.stdout).get("usage")
    return usage if isinstance(usage, dict) else None


def _run_record(state: DevState, run_id: int) -> dict[str, Any]:
    run = state.run(run_id)
    transcript = state.transcript(run_id)
    reports = [
        r
        for r in state.requests
        if r.method == "POST"
        and r.path.startswith(f"/api/workers/me/runs/{run_id}/complete")
        and r.status == 200
    ]
    return {
        "run_id": run_id,
        "status": run.status,
        "reason_code": run.reason_code,
        "output": run.output,
        "error": run.error,
        "exit_reason": run.exit_reason,
        "rounds": len(reports),
        "windows_completed": run.windows_completed,
        "session_token": run.session_token,
        "transcript": dataclasses.asdict(transcript) if transcript is not None else None,
        "transcript_requests": [
            r.status for r in state.requests if r.path == "/lobu/worker/transcript/snapshot"
        ],
    }


def _mcp_calls(state: DevState) -> list[dict[str, Any]]:
    return [call._asdict() for call in state.mcp_calls]


def _automation(profile: str, env: dict[str, str], agent_home: Path) -> dict[str, Any]:
    state = DevState(create_checkin_watcher=False, lane="automation", next_poll_seconds=0.2)
    token = state.add_token()
    first = state.add_automation(
        "Summarise what is new in the inbox.",
        name="Inbox digest",
        agent_kind=profile,
        pinned_worker_id=WORKER,
    )
    nudged = state.add_automation(
        f"Summarise what is new in the inbox. {FORGET}",
        name="Inbox digest, nudged",
        agent_kind=profile,
        pinned_worker_id=WORKER,
        max_attempts=2,
    )
    runs: list[dict[str, Any]] = []
    with DevServer(state).running_in_thread() as server:
        for automation in (first, nudged):
            run_id = state.queue_automation_run(automation)
            agent = _agent_once(profile, env, agent_home, server.url, token)
            usage = _usage(env, agent_home, run_id)
            runs.append({**_run_record(state, run_id), "agent": agent, "usage": usage})
    return {"device_token": token, "runs": runs, "mcp_calls": _mcp_calls(state)}


def _watcher(profile: str, env: dict[str, str], agent_home: Path) -> dict[str, Any]:
    state = DevState(create_checkin_watcher=False)
    token = state.add_token()
    watcher = state.add_watcher(
        "Check my inbox and tell me what is new.",
        name="Inbox",
        agent_kind=profile,
        pinned_worker_id=WORKER,
    )
    with DevServer(state).running_in_thread() as server:
        run_id = state.queue_run(watcher)
        agent = _agent_once(profile, env, agent_home, server.url, token)
        usage = _usage(env, agent_home, run_id)
        run = {**_run_record(state, run_id), "agent": agent, "usage": usage}
    return {"device_token": token, "runs": [run], "mcp_calls": _mcp_calls(state)}


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:  # the sandbox's user can start the agent, and node
        check = [sys.executable, "-c", "import device_agent.cli.main, device_agent.devserver"]
        node = [os.environ.get("REALCLI_NODE", "node"), "--version"]
        sys.exit(
            subprocess.run(check, check=False).returncode
            or subprocess.run(node, check=False, stdout=subprocess.DEVNULL).returncode
        )
    sys.exit(main(sys.argv[1], sys.argv[2]))
