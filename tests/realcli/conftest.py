"""The real-CLI suite's fixtures: the CLIs installed from npm, and a sandbox to run them in.

The CLIs are installed at the versions their profiles were checked against
(`checked_version`, tests/realcli/clis.py) with `npm install --prefix` into a cache
folder, one per CLI and version, reused when present:
`$DEVICE_AGENT_REALCLI_CACHE`, else `~/.cache/device-agent-realcli` — or, for root,
`/var/cache/device-agent-realcli`, because the CLIs then run as an unprivileged user,
who cannot read root's home. Where npm cannot reach its registry and a CLI is not
cached yet, every test skips with the reason; any other failure fails.

Each scenario runs in a loopback-only network namespace (`unshare`) where the
machine allows, as an ordinary user: when the tests run as root (as in CI), a
system user of the suite's own (`device-agent-realcli`, made with useradd), else the
user running them, mapped to itself. Running a CLI as root would hide rules that
depend on who owns a file, such as Gemini CLI's for its system settings file.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.realcli.clis import CLIS, Cli

REPO = Path(__file__).resolve().parents[2]
SUITE_USER = "device-agent-realcli"
NPM_TIMEOUT = 900.0  # a first install downloads a few hundred MB
SCENARIO_TIMEOUT = 600.0
# What npm says when it cannot reach its registry (as opposed to any other failure).
_OFFLINE = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT", "ENETUNREACH", "ECONNRESET")

RESULTS: dict[str, dict[str, Any]] = {}  # profile -> scenario result, for the summary table
SANDBOXES: list[Sandbox] = []  # the session's sandbox, for the summary
SCRATCH: list[Path] = []  # readable copies made for the suite's user, removed at the end


def cache_dir() -> Path:
    configured = os.environ.get("DEVICE_AGENT_REALCLI_CACHE")
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/cache/device-agent-realcli")
    return Path.home() / ".cache" / "device-agent-realcli"


def _bin_dir(cli: Cli) -> Path:
    return cache_dir() / f"{cli.profile}-{cli.version}" / "node_modules" / ".bin"


def _install(clis: list[Cli]) -> None:
    """npm install the CLIs not cached yet, side by side; skip if npm cannot reach its registry."""
    missing = [cli for cli in clis if not (_bin_dir(cli) / cli.binary).exists()]
    if not missing:
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: cannot install the real CLIs")
    cache_dir().mkdir(parents=True, exist_ok=True, mode=0o755)
    started: list[tuple[Cli, Path, subprocess.Popen[str]]] = []
    for cli in missing:
        partial = Path(tempfile.mkdtemp(prefix=f"{cli.profile}-{cli.version}.", dir=cache_dir()))
        partial.chmod(0o755)
        command = [
            npm,
            "install",
            "--prefix",
            str(partial),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            f"{cli.package}@{cli.version}",
        ]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        started.append((cli, partial, process))
    failures: list[str] = []
    for cli, partial, process in started:
        output, _ = process.communicate(timeout=NPM_TIMEOUT)
        if process.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            failures.append(f"{cli.package}@{cli.version}: {output.strip()[-3000:]}")
            continue
        final = _bin_dir(cli).parents[1]
        if final.exists():  # another run installed it meanwhile
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.rename(final)
    if failures:
        text = "\n".join(failures)
        offline = [line for line in text.splitlines() if any(c in line for c in _OFFLINE)]
        if offline:
            pytest.skip(
                "npm cannot reach its registry, so the real CLIs cannot be installed: "
                + offline[0].strip()
            )
        pytest.fail(f"npm install failed:\n{text}", pytrace=False)


@pytest.fixture(scope="session")
def real_clis() -> dict[str, Path]:
    """Every CLI of tests/realcli/clis.py installed; profile -> the folder with its binary."""
    clis = list(CLIS.values())
    _install(clis)
    return {cli.profile: _bin_dir(cli) for cli in clis}


# ------------------------------------------------------------------ the sandbox


@dataclass
class Sandbox:
    """How a scenario is started: the command before `python -m ...`, and as whom."""

    prefix: list[str]
    uid: int
    gid: int
    notes: list[str] = field(default_factory=list)  # what could not be isolated, and why
    python: str = sys.executable
    python_path: list[str] = field(default_factory=lambda: [str(REPO)])

    def workdir(self) -> Path:
        """A fresh folder the scenario's user owns (0700)."""
        path = Path(tempfile.mkdtemp(prefix="device-agent-realcli-"))
        os.chown(path, self.uid, self.gid)
        return path

    def run(self, module: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PYTHONPATH": os.pathsep.join(self.python_path),
            "REALCLI_NODE": shutil.which("node") or "/usr/bin/node",
        }
        return subprocess.run(
            [*self.prefix, self.python, "-m", module, *args],
            cwd=str(REPO),
            env=env,
            capture_output=True,
            text=True,
            timeout=SCENARIO_TIMEOUT,
            check=False,
        )


def _suite_user() -> tuple[int, int]:
    """The unprivileged system user the suite runs CLIs as under root; made if missing."""
    try:
        entry = pwd.getpwnam(SUITE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SUITE_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(SUITE_USER)
    return entry.pw_uid, entry.pw_gid


def _works(command: list[str]) -> bool:
    try:
        done = subprocess.run(command, capture_output=True, timeout=30, check=False)
    except OSError:
        return False
    return done.returncode == 0


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    netns = [sys.executable, "-m", "tests.realcli.netns"]
    if os.geteuid() == 0:
        uid, gid = _suite_user()
        drop = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
        if _works(["unshare", "-n", "true"]):
            box = Sandbox(["unshare", "-n", "--", *netns, *drop], uid, gid)
        else:
            box = Sandbox(drop, uid, gid, ["no network namespace (unshare -n fails here)"])
    else:
        uid, gid = os.getuid(), os.getgid()
        # Root of a user namespace of our own for the loopback, then ourselves again
        # (--map-user), so that files keep their real owners.
        inner = ["unshare", f"--map-user={uid}", f"--map-group={gid}", "--"]
        if _works(["unshare", "-rn", "--", *inner, "true"]):
            box = Sandbox(["unshare", "-rn", "--", *netns, *inner], uid, gid)
        else:
            box = Sandbox([], uid, gid, ["no network namespace (unshare -rn fails here)"])
    _pick_python(box)
    SANDBOXES.append(box)
    yield box
    for staging in SCRATCH:
        shutil.rmtree(staging, ignore_errors=True)


def _readable_copy(uid: int) -> list[str]:
    """The package, its data, the tests and this interpreter's packages, copied where `uid`
    can read them; the copy's import path. Removed when the session ends."""
    staging = Path(tempfile.mkdtemp(prefix="device-agent-realcli-", dir="/var/tmp"))
    SCRATCH.append(staging)
    skip = shutil.ignore_patterns("__pycache__", "node_modules", ".venv")
    for name in ("device_agent", "tests", "executors", "config"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, staging / "code" / name, ignore=skip)
    path = [str(staging / "code")]
    for number, packages in enumerate(site.getsitepackages()):
        if Path(packages).is_dir():
            target = staging / f"site-{number}"
            shutil.copytree(packages, target, ignore=skip, symlinks=True)
            path.append(str(target))
    for folder, dirs, files in os.walk(staging):
        for name in (*dirs, *files):
            entry = Path(folder) / name
            if not entry.is_symlink():  # a link's target is not ours to change
                entry.chmod(0o755 if name in dirs else 0o644)
    staging.chmod(0o755)
    return path


def _pick_python(box: Sandbox) -> None:
    """An interpreter the sandbox's user may run (a venv's may live in root's 0700 home),
    with this one's packages on its path; fails the session when there is none."""
    packages = [str(REPO), *site.getsitepackages()]
    candidates = [(sys.executable, [str(REPO)])]
    candidates += [(p, packages) for p in ("/usr/bin/python3", "/usr/local/bin/python3")]
    if os.geteuid() == 0 and box.uid != 0:
        # A checkout the suite's user cannot read (a 0700 temporary clone, root's home):
        # run from a readable copy of the code, the tests and this venv's packages.
        staged = _readable_copy(box.uid)
        candidates += [(p, staged) for p in ("/usr/bin/python3", "/usr/local/bin/python3")]
    problems = []
    for python, path in candidates:
        if not Path(python).exists():
            continue
        box.python, box.python_path = python, path
        check = box.run("tests.realcli.scenario", "--check")
        if check.returncode == 0:
            return
        problems.append(f"{python}: {check.stderr.strip()[-500:]}")
    pytest.fail(
        f"no Python the suite's user (uid {box.uid}) can run the scenario with from {REPO}:\n"
        + "\n".join(problems)
        + "\nThe checkout, its .venv, the interpreter and node must be readable by that user.",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def scenarios(real_clis: dict[str, Path], sandbox: Sandbox) -> Iterator[Scenarios]:
    runner = Scenarios(real_clis, sandbox)
    yield runner
    runner.close()


class Scenarios:
    """Runs each CLI's scenario once (tests/realcli/scenario.py) and keeps the result."""

    def __init__(self, bin_dirs: dict[str, Path], sandbox: Sandbox) -> None:
        self.bin_dirs = bin_dirs
        self.sandbox = sandbox
        self._results: dict[tuple[str, str], dict[str, Any]] = {}
        self._work: list[Path] = []

    def result(
        self, profile: str, lanes: tuple[str, ...] = ("automation", "watcher"), **extra: Any
    ) -> dict[str, Any]:
        key = (profile, json.dumps([lanes, extra], sort_keys=True))
        if key not in self._results:
            self._results[key] = self._run(profile, lanes, extra)
        return self._results[key]

    def _run(self, profile: str, lanes: tuple[str, ...], extra: dict[str, Any]) -> dict[str, Any]:
        work = self.sandbox.workdir()
        self._work.append(work)
        spec = {
            "profile": profile,
            "work": str(work),
            "bin_dirs": [str(self.bin_dirs[profile])],
            "lanes": list(lanes),
            **extra,
        }
        spec_path, result_path = work / "spec.json", work / "result.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        os.chown(spec_path, self.sandbox.uid, self.sandbox.gid)
        done = self.sandbox.run("tests.realcli.scenario", str(spec_path), str(result_path))
        if done.returncode != 0 or not result_path.exists():
            pytest.fail(
                f"the {profile} scenario failed (status {done.returncode}):\n{done.stderr[-4000:]}",
                pytrace=False,
            )
        result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
        result["work"] = str(work)
        if not extra:
            RESULTS[profile] = result
        return result

    def close(self) -> None:
        if os.environ.get("DEVICE_AGENT_REALCLI_KEEP"):
            return
        for work in self._work:
            shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------ the table


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """CLI, version, lane, result, rounds, which token each run's MCP calls carried, and what
    the run cost as the device read it from the CLI's output (tokens in/out, dollars)."""
    if not RESULTS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("real CLIs through device-agent")
    for box in SANDBOXES:
        where = "; ".join(box.notes) or "in a loopback-only network namespace"
        write(f"as uid {box.uid} ({'root' if box.uid == 0 else 'not root'}), {where}")
    write(
        f"{'CLI':<12} {'version':<9} {'lane':<11} {'result':<42} {'rounds':<6} "
        f"{'MCP token':<38} usage"
    )
    for profile, result in RESULTS.items():
        for lane, outcome in result["lanes"].items():
            for run in outcome["runs"]:
                status = run["status"] + (f" ({run['reason_code']})" if run["reason_code"] else "")
                if lane == "watcher":
                    status += f": {(run['output'] or '').strip()[:30]!r}"
                write(
                    f"{profile:<12} {result['version']:<9} {lane:<11} {status:<42} "
                    f"{run['rounds']:<6} {token_kind(outcome, run):<38} {usage_words(run)}"
                )


def usage_words(run: dict[str, Any]) -> str:
    """Tokens in/out and the stated cost ("240/40 tokens, $0.0000"); "-" for none read."""
    usage = run.get("usage")
    if not isinstance(usage, dict) or "history_failed" in usage:
        return "-"
    cost = usage.get("cost_usd")
    stated = "no cost stated" if cost is None else f"${cost:.4f}"
    return f"{usage.get('tokens_in')}/{usage.get('tokens_out')} tokens, {stated}"


def token_kind(outcome: dict[str, Any], run: dict[str, Any]) -> str:
    """Which credential the run's Lobu tool calls reached the server with."""
    calls = [c for c in outcome["mcp_calls"] if c["method"] == "tools/call"]
    if run["session_token"]:
        calls = [c for c in calls if c["token"] == run["session_token"]]
        return "session token" if calls else "no tool call"
    tokens = {c["token"] for c in calls}
    if not tokens:
        return "no tool call"
    if tokens == {outcome["device_token"]}:
        return "device token (through the run's proxy)"
    return "other: " + ", ".join(sorted(str(t)[:12] for t in tokens))
