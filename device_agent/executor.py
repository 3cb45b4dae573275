"""Run one CLI agent for one run: the only module that touches processes.

A run goes through five steps, and `execute` never raises past them (only the
calling task's own cancellation propagates, after the process group is dead):

1. prepare: pick the profile, validate `execution_config`, make the workdir and
   a private 0700 directory, write the prompt and MCP files there, build the
   argv and the child's environment (never with our token in either);
2. run: start the CLI in a session of its own (so it leads its own process
   group), feed the prompt on stdin or close stdin, drain stdout and stderr
   concurrently under caps, and wait for exit, timeout or cancellation;
3. stop: SIGTERM the whole group, `kill_grace_seconds`, SIGKILL — after a
   normal exit too, so that a grandchild left in the background dies with it;
4. read: the profile's reader turns the output into output, error and details;
5. clean up: the private directory (the MCP config holds the token) and the
   temp workdir are removed in a `finally`, whatever happened.

A SIGKILL we did not send is reported as a crash, not as "oom": nothing
portable tells an out-of-memory kill apart from any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import structlog

from device_agent.profiles import MCP_SLOT, OPTIONS_SLOT, PLACEHOLDER, PRIVATE, Profile
from device_agent.protocol import Report
from device_agent.readers import Captured, FileReader, Reading, tail
from device_agent.settings import ENV_TOKEN, ExecutorSettings

logger = structlog.get_logger(__name__)

DEFAULT_TIMEOUT_SECONDS: Final = 600.0
MAX_TIMEOUT_SECONDS: Final = 86400.0
PERMISSION_MODES: Final = ("acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "plan")
EFFORTS: Final = ("low", "medium", "high")
TRUNCATED: Final = "[output truncated]"
REDACTED: Final = "[REDACTED]"
MIN_SECRET_LENGTH: Final = 6  # shorter values would match ordinary text
BASIC_ENV: Final = ("PATH", "HOME", "USER", "LANG", "TMPDIR")  # pass even an env_allow list
EXTRA_PATH: Final = (
    "~/.local/bin",
    "/opt/homebrew/bin",
    "/usr/local/bin",
    "~/.bun/bin",
    "~/.npm-global/bin",
)
CANCELLED_BY_AGENT: Final = "stopped by the device agent"
# Set in every child's environment: lets the next agent for this home find the
# CLIs a killed agent left behind, without trusting a PID that may be reused.
RUN_MARKER: Final = "DEVICE_AGENT_RUN"
OUTSIDE_NOTE: Final = "outside-file-"  # scratch-dir notes naming token files written elsewhere

_READ_CHUNK: Final = 256 * 1024
_TAIL_BYTES: Final = 4096  # the end of each stream is kept even past the cap, for error text
_POLL_SECONDS: Final = 0.02
_REAP_SECONDS: Final = 2.0  # after SIGKILL, how long the group may take to vanish
_PIPE_SECONDS: Final = 2.0  # after the group is gone, how long a pipe may stay open
_PACKAGE_PARENT: Final = str(Path(__file__).resolve().parent.parent)
# A value that becomes one argv element: no whitespace, and no leading "-" that
# would turn a model name sent by the server into a flag of its own.
_PLAIN_VALUE: Final = re.compile(r"[A-Za-z0-9_.:/@+\[\]][A-Za-z0-9_.:/@+\[\]=,-]{0,199}")


@dataclass(frozen=True)
class McpWiring:
    """Where the CLI reaches the Lobu tools, and the token it uses there."""

    url: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class ExecutionRequest:
    run_id: int
    agent_kind: str  # the executor profile's name
    prompt: str
    execution_config: Mapping[str, Any] = field(default_factory=dict)
    mcp: McpWiring | None = None


@dataclass(frozen=True)
class ExecutionResult:
    output: str
    error: str | None
    exit_code: int | None
    exit_signal: str | None
    exit_reason: str  # ok | error_message | timeout | oom | crash | cancelled
    duration_ms: int
    details: Mapping[str, Any] = field(default_factory=dict)  # cost, turns, session id, argv...

    def report(self) -> Report:
        return Report(
            output=self.output,
            error=self.error,
            duration_ms=self.duration_ms,
            exit_code=self.exit_code,
            exit_signal=self.exit_signal,
            exit_reason=self.exit_reason,
        )


class CancelEvent(asyncio.Event):
    """An `asyncio.Event` that remembers why the run was cancelled.

    `execute` accepts a plain `asyncio.Event` too; the error then says
    "run cancelled: stopped by the device agent".
    """

    def __init__(self) -> None:
        super().__init__()
        self.reason = ""

    def cancel(self, reason: str) -> None:
        self.reason = reason
        self.set()


class _Refused(Exception):
    """The run cannot start; the message becomes its error."""


@dataclass(frozen=True)
class _Launch:
    profile: Profile
    argv: list[str]
    shown_argv: list[str]  # argv with the prompt elided, for logs and details
    env: dict[str, str]
    cwd: Path
    stdin: bytes | None
    timeout: float
    output_file: Path | None
    mcp: bool
    ignored: tuple[str, ...]  # execution_config keys this CLI has no flag for


class Executor:
    def __init__(
        self,
        settings: ExecutorSettings,
        profiles: Mapping[str, Profile],
        *,
        secrets: tuple[str, ...] = (),
        environ: Mapping[str, str] | None = None,
        scratch_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.profiles = dict(profiles)
        self.secrets = secrets
        self.environ = environ  # None: os.environ at the time of each run
        # Where per-run temp dirs go (None: the system temp dir). Our own folder,
        # so that files a killed agent could not delete are found and removed.
        self.scratch_dir = scratch_dir

    def has_profile(self, agent_kind: str) -> bool:
        profile = self.profiles.get(agent_kind)
        return profile is not None and profile.configured

    async def execute(self, request: ExecutionRequest, *, cancel: asyncio.Event) -> ExecutionResult:
        started = time.monotonic()
        log = logger.bind(run_id=request.run_id, agent_kind=request.agent_kind)
        redact = _Redactor(self._secrets(request))
        if cancel.is_set():
            return _cancelled_before_start(cancel, started)
        try:
            async with contextlib.AsyncExitStack() as cleanup:
                launch = self._prepare(request, cleanup, log)
                finished = await self._run(launch, cancel, log)
                result = self._conclude(launch, finished, cancel, started)
        except _Refused as exc:
            log.warning("run not started", error=redact(str(exc)))
            result = _failed(str(exc), started)
        except Exception as exc:  # a bug or an OS failure must fail this run, never the loop
            log.exception("executor failed")
            result = _failed(f"executor error: {type(exc).__name__}: {exc}", started)
        result = redact.result(result)
        log.info(
            "run ended",
            exit_reason=result.exit_reason,
            exit_code=result.exit_code,
            exit_signal=result.exit_signal,
            duration_ms=result.duration_ms,
            error=result.error,
        )
        return result

    # ----------------------------------------------------------- prepare

    def _prepare(
        self, request: ExecutionRequest, cleanup: contextlib.AsyncExitStack, log: Any
    ) -> _Launch:
        profile = self.profiles.get(request.agent_kind)
        if profile is None or not profile.configured:
            hint = f" (set argv in {profile.source.name} in the config dir)" if profile else ""
            raise _Refused(
                f"no local agent executor configured for agent_kind='{request.agent_kind}'{hint}"
            )
        config = request.execution_config or {}
        timeout = _timeout(config)
        flags, ignored = _option_flags(profile, config)
        if ignored:
            log.debug("execution_config keys this CLI has no flag for; ignored", keys=ignored)
        secrets = self._secrets(request)
        env = child_environment(self.environ, self.settings, secrets=secrets)
        binary = profile.resolve(env["PATH"])
        if binary is None:
            raise _Refused(f"{profile.program} binary not found on PATH")

        workdir = self._workdir(request.run_id, cleanup)
        private = Path(
            tempfile.mkdtemp(prefix=f"device-agent-{request.run_id}-", dir=self._scratch())
        )
        cleanup.callback(shutil.rmtree, private, ignore_errors=True)
        values = {
            "{python}": sys.executable,
            "{python_path}": _PACKAGE_PARENT,
            "{workdir}": str(workdir),
        }
        stdin = _hand_over_prompt(profile, request.prompt, private, values, cleanup)
        output_file = private / "output.txt" if isinstance(profile.reader, FileReader) else None
        if output_file is not None:
            values["{output_file}"] = str(output_file)

        mcp_args, mcp_env = self._wire_mcp(profile, request, workdir, private, values, cleanup, log)
        slots = {OPTIONS_SLOT: flags, MCP_SLOT: mcp_args}
        argv = [binary, *_expand(profile.args, values, slots)]
        if any(secret in arg for arg in argv for secret in secrets):
            raise _Refused("refusing to start: a secret would appear on the command line")
        env.update({name: _fill(value, values) for name, value in profile.env.items()})
        env.update(mcp_env)
        if self.scratch_dir is not None:
            env[RUN_MARKER] = f"{self.scratch_dir}{os.sep}{request.run_id}"
        elided = {**values, "{prompt}": f"<prompt: {len(request.prompt)} characters>"}
        return _Launch(
            profile=profile,
            argv=argv,
            shown_argv=[binary, *_expand(profile.args, elided, slots)],
            env=env,
            cwd=workdir,
            stdin=stdin,
            timeout=timeout,
            output_file=output_file,
            mcp=bool(mcp_args or mcp_env),
            ignored=ignored,
        )

    def _scratch(self) -> str | None:
        if self.scratch_dir is None:
            return None
        self.scratch_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return str(self.scratch_dir)

    async def recover(self) -> int:
        """After a previous agent for this home was killed: stop the CLIs it left running and
        delete the files it could not (a per-run MCP config holds the token). Call only while
        holding the single-instance lock. Returns the number of process groups stopped."""
        if self.scratch_dir is None:
            return 0
        marker = f"{RUN_MARKER}={self.scratch_dir}{os.sep}"
        groups = await asyncio.to_thread(_groups_with_marker, marker)
        for group in groups:
            logger.warning("stopping a CLI left running by a killed agent", group=group)
            await stop_group(group, self.settings.kill_grace_seconds)
        if self.scratch_dir.is_dir():
            await asyncio.to_thread(_remove_leftovers, self.scratch_dir)
        return len(groups)

    def _remember_outside_file(
        self, path: Path, run_id: int, cleanup: contextlib.AsyncExitStack
    ) -> None:
        """A token file outside our scratch dir (Gemini's settings in a configured workdir):
        leave a note in the scratch dir, so that `recover` deletes it after a SIGKILL too."""
        if self.scratch_dir is None:
            return
        self._scratch()
        note = self.scratch_dir / f"{OUTSIDE_NOTE}{run_id}-{os.getpid()}"
        note.write_text(str(path), encoding="utf-8")
        cleanup.callback(note.unlink, missing_ok=True)  # registered first: runs after the file

    def _secrets(self, request: ExecutionRequest) -> tuple[str, ...]:
        """Values that must not reach a child's argv or inherited environment, nor a result."""
        candidates = (*self.secrets, request.mcp.token if request.mcp else "")
        return tuple(s for s in dict.fromkeys(candidates) if len(s) >= MIN_SECRET_LENGTH)

    def _workdir(self, run_id: int, cleanup: contextlib.AsyncExitStack) -> Path:
        if self.settings.workdir is not None:
            self.settings.workdir.mkdir(parents=True, exist_ok=True)
            return self.settings.workdir  # the user's directory: never removed
        workdir = Path(tempfile.mkdtemp(prefix=f"device-agent-run-{run_id}-", dir=self._scratch()))
        if not self.settings.keep_workdir:
            # A CLI may have cloned a repo here: remove it off the event loop.
            cleanup.push_async_callback(asyncio.to_thread, shutil.rmtree, workdir, True)
        return workdir

    def _wire_mcp(
        self,
        profile: Profile,
        request: ExecutionRequest,
        workdir: Path,
        private: Path,
        values: Mapping[str, str],
        cleanup: contextlib.AsyncExitStack,
        log: Any,
    ) -> tuple[list[str], dict[str, str]]:
        """The MCP flags and environment for this run; the config file is gone when the run is."""
        spec, wiring = profile.mcp, request.mcp
        if wiring is None or not self.settings.mcp:
            return [], {}
        if spec is None:
            log.debug("this profile has no [mcp] table; the CLI runs without the Lobu tools")
            return [], {}
        values = {**values, "{mcp_url}": _checked_url(wiring.url), "{mcp_token}": wiring.token}
        config = json.dumps(_fill_deep(spec.config, values)) if spec.config is not None else ""
        path: Path | None = None
        if spec.file == PRIVATE:
            path = _write_private(private / "mcp.json", config, cleanup, inside=private)
        elif spec.file:
            path = workdir / spec.file
            if path.exists():  # a configured workdir may hold the user's own file: never clobber it
                log.warning(
                    "MCP config file already exists in the workdir; not overwriting it, "
                    "so this run has no Lobu tools",
                    path=str(path),
                )
                return [], {}
            self._remember_outside_file(path, request.run_id, cleanup)
            _write_private(path, config, cleanup, inside=workdir)
        values = {**values, "{mcp_config}": str(path or ""), "{mcp_config_json}": config}
        args = [_fill(arg, values) for arg in spec.args]
        env = {name: _fill(value, values) for name, value in spec.env.items()}
        return args, env

    # --------------------------------------------------------------- run

    async def _run(self, launch: _Launch, cancel: asyncio.Event, log: Any) -> _Finished:
        log.info(
            "starting CLI",
            argv=launch.shown_argv,
            cwd=str(launch.cwd),
            timeout_seconds=launch.timeout,
            mcp=launch.mcp,
        )
        try:
            return await run_in_group(
                launch.argv,
                env=launch.env,
                cwd=launch.cwd,
                stdin=launch.stdin,
                time_limit=launch.timeout,
                cancel=cancel,
                grace=self.settings.kill_grace_seconds,
                stdout_cap=self.settings.stdout_cap_bytes,
                stderr_cap=self.settings.stderr_cap_bytes,
            )
        except FileNotFoundError:
            raise _Refused(f"{launch.profile.program} binary not found on PATH") from None
        except PermissionError:
            raise _Refused(f"{launch.argv[0]} is not executable") from None
        except OSError as exc:
            problem = exc.strerror or exc
            raise _Refused(f"cannot start {launch.profile.program}: {problem}") from None

    # -------------------------------------------------------------- read

    def _conclude(
        self, launch: _Launch, finished: _Finished, cancel: asyncio.Event, started: float
    ) -> ExecutionResult:
        stdout = finished.stdout.text()
        stderr_tail = tail(finished.stderr.last())
        last_words = stderr_tail or tail(finished.stdout.last())
        reading = launch.profile.reader.read(
            Captured(
                stdout,
                finished.stderr.text(),
                _read_capped(launch.output_file, self.settings.stdout_cap_bytes),
            )
        )
        code = finished.returncode
        exit_code = code if code is not None and code >= 0 else None
        exit_signal = _signal_name(-code) if code is not None and code < 0 else None
        name = Path(launch.profile.program).name
        note = f"; last output: {last_words}" if last_words else ""
        error: str | None
        if finished.stopped_by == "cancelled":
            reason, error = "cancelled", f"run cancelled: {_cancel_reason(cancel)}"
        elif finished.stopped_by == "timeout":
            reason, error = "timeout", f"timed out after {launch.timeout:g} s{note}"
        elif exit_signal is not None:
            reason, error = "crash", f"{name} was killed by {exit_signal}{note}"
        elif reading.error:
            reason, error = "error_message", reading.error
        elif code != 0:
            reason = "error_message"
            error = f"{name} exited with status {code}" + (f": {last_words}" if last_words else "")
        elif reading.problem:
            reason, error = "error_message", f"{name}: {reading.problem}"
        else:
            reason, error = "ok", None
        output = reading.output if error is None or reading.output else stdout
        return ExecutionResult(
            output=output,
            error=error,
            exit_code=exit_code,
            exit_signal=exit_signal,
            exit_reason=reason,
            duration_ms=_elapsed_ms(started),
            details=self._details(launch, finished, reading),
        )

    def _details(self, launch: _Launch, finished: _Finished, reading: Reading) -> dict[str, Any]:
        details: dict[str, Any] = dict(reading.details)
        details.update(
            argv=launch.shown_argv,
            stdout_bytes=finished.stdout.total,
            stderr_bytes=finished.stderr.total,
            mcp=launch.mcp,
        )
        if finished.stdout.truncated:
            details["stdout_truncated"] = True
        if finished.stderr.truncated:
            details["stderr_truncated"] = True
        if launch.ignored:
            details["ignored_options"] = list(launch.ignored)
        if self.settings.keep_workdir and self.settings.workdir is None:
            details["workdir"] = str(launch.cwd)
        return details


# ------------------------------------------------------ execution_config


def _timeout(config: Mapping[str, Any]) -> float:
    value = config.get("timeout_seconds")
    if value is None:
        return DEFAULT_TIMEOUT_SECONDS
    if not _is_number(value) or not 1 <= value <= MAX_TIMEOUT_SECONDS:
        raise _Refused(
            f"execution_config.timeout_seconds must be a number of seconds from 1 to "
            f"{MAX_TIMEOUT_SECONDS:g}, got {value!r}"
        )
    return float(value)


def _option_flags(profile: Profile, config: Mapping[str, Any]) -> tuple[list[str], tuple[str, ...]]:
    """The flags for `config` in profile order, and the keys this CLI has no flag for."""
    given = {
        key: value
        for key, value in config.items()
        if key != "timeout_seconds" and value is not None
    }
    texts = {
        key: _option_value(key, value)
        for key, value in given.items()
        if key in _VALIDATORS or key in profile.options
    }
    flags: list[str] = []
    ignored = [key for key in given if key not in profile.options]
    for key, option in profile.options.items():
        if key in texts:
            rendered = option.render(texts[key])
            if rendered is None:  # e.g. permission_mode "dontAsk" for a CLI without one
                ignored.append(f"{key}={texts[key]}")
            else:
                flags.extend(rendered)
    return flags, tuple(ignored)


def _option_value(key: str, value: Any) -> str:
    validate = _VALIDATORS.get(key, _plain)
    return validate(key, value)


_Validator = Callable[[str, Any], str]


def _one_of(choices: tuple[str, ...]) -> _Validator:
    def validate(key: str, value: Any) -> str:
        if value not in choices:
            raise _Refused(
                f"execution_config.{key} {value!r} is not allowed: use one of {', '.join(choices)}"
            )
        return str(value)

    return validate


def _positive_number(key: str, value: Any) -> str:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise _Refused(f"execution_config.{key} must be a positive number, got {value!r}")
    return _number_text(value)


def _plain(key: str, value: Any) -> str:
    if _is_number(value):
        return _number_text(value)
    if isinstance(value, str) and _PLAIN_VALUE.fullmatch(value):
        return value
    raise _Refused(
        f"execution_config.{key} {value!r} cannot be passed to a CLI: use up to 200 letters, "
        "digits and . _ : / @ + [ ] = , - (not starting with -)"
    )


_VALIDATORS: Final[Mapping[str, _Validator]] = {
    "model": _plain,
    "max_budget_usd": _positive_number,
    "permission_mode": _one_of(PERMISSION_MODES),
    "effort": _one_of(EFFORTS),
}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# --------------------------------------------------------------- environment


def child_environment(
    environ: Mapping[str, str] | None,
    settings: ExecutorSettings,
    *,
    secrets: Iterable[str],
) -> dict[str, str]:
    """The user's environment minus our credentials, through env_allow/env_deny, PATH extended."""
    source = os.environ if environ is None else environ
    hidden = [s for s in secrets if len(s) >= MIN_SECRET_LENGTH]
    env: dict[str, str] = {}
    for name, value in source.items():
        if name == ENV_TOKEN or any(secret in value for secret in hidden):
            continue
        if settings.env_allow and name not in BASIC_ENV and not _matches(name, settings.env_allow):
            continue
        if _matches(name, settings.env_deny):
            continue
        env[name] = value
    home = Path(env.get("HOME") or Path.home())
    env["PATH"] = extended_path(env.get("PATH") or os.defpath, home=home)
    return env


def extended_path(path: str, *, home: Path) -> str:
    """`path` plus the usual install dirs of CLI agents that exist here, without duplicates."""
    entries = [entry for entry in path.split(os.pathsep) if entry]
    for extra in EXTRA_PATH:
        directory = str(home / extra[2:]) if extra.startswith("~/") else extra
        if os.path.isdir(directory):
            entries.append(directory)
    return os.pathsep.join(dict.fromkeys(entries))


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


# ------------------------------------------------------------------- files


def _hand_over_prompt(
    profile: Profile,
    prompt: str,
    private: Path,
    values: dict[str, str],
    cleanup: contextlib.AsyncExitStack,
) -> bytes | None:
    """The bytes for stdin, or None after putting the prompt in `values` for argv."""
    if profile.prompt == "stdin":
        return prompt.encode("utf-8", errors="replace")
    if profile.prompt == "file":
        values["{prompt_file}"] = str(
            _write_private(private / "prompt.md", prompt, cleanup, inside=private)
        )
    else:
        values["{prompt}"] = prompt
    return None


def _write_private(
    path: Path, text: str, cleanup: contextlib.AsyncExitStack, *, inside: Path
) -> Path:
    """Write `text` for our eyes only (0600; missing parents below `inside` 0700), removed later."""
    created = [p for p in reversed(path.parents) if p.is_relative_to(inside) and not p.exists()]
    for directory in created:
        directory.mkdir(mode=0o700)
    # O_EXCL and O_NOFOLLOW: never write through a file or symlink someone put there first.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as handle:
        handle.write(text)
    cleanup.callback(_remove, path, created)
    return path


def _remove(path: Path, created_dirs: list[Path]) -> None:
    path.unlink(missing_ok=True)
    for directory in reversed(created_dirs):
        with contextlib.suppress(OSError):
            directory.rmdir()


def _read_capped(path: Path | None, cap: int) -> str | None:
    if path is None:
        return None
    try:
        with path.open("rb") as handle:
            data = handle.read(cap + 1)
    except OSError:
        return None
    text = data[:cap].decode("utf-8", errors="replace")
    return text + "\n" + TRUNCATED if len(data) > cap else text


def _checked_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or re.search(r"[\s\"'\\]", url):
        raise _Refused(f"the MCP URL {url!r} is not a plain http(s) URL")
    return url


def _fill(text: str, values: Mapping[str, str]) -> str:
    # One pass: a value that itself contains "{workdir}" (a prompt may) is not expanded again.
    return PLACEHOLDER.sub(lambda m: values.get(m.group(0), m.group(0)), text)


def _fill_deep(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _fill(value, values)
    if isinstance(value, Mapping):
        return {key: _fill_deep(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill_deep(item, values) for item in value]
    return value


def _expand(
    template: Sequence[str], values: Mapping[str, str], slots: Mapping[str, Sequence[str]]
) -> list[str]:
    argv: list[str] = []
    for arg in template:
        if arg in slots:
            argv.extend(slots[arg])
        else:
            argv.append(_fill(arg, values))
    return argv


# --------------------------------------------------------------- processes


class _Capped:
    """The first `cap` bytes of a stream and its last few; the rest is read and dropped.

    Draining past the cap keeps the child from blocking on a full pipe, and
    dropping keeps a CLI that prints 100 MB from growing our memory.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.head = bytearray()
        self.end = b""
        self.total = 0

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(_READ_CHUNK):
            self.total += len(chunk)
            room = self.cap - len(self.head)
            if room > 0:
                self.head += chunk[:room]
            self.end = (self.end + chunk[-_TAIL_BYTES:])[-_TAIL_BYTES:]

    @property
    def truncated(self) -> bool:
        return self.total > self.cap

    def text(self) -> str:
        text = self.head.decode("utf-8", errors="replace")
        return f"{text}\n{TRUNCATED}" if self.truncated else text

    def last(self) -> str:
        return self.end.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class _Finished:
    returncode: int | None
    stopped_by: str | None  # "timeout" or "cancelled" when we ended it, else None
    stdout: _Capped
    stderr: _Capped


async def run_in_group(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | None,
    stdin: bytes | None,
    time_limit: float,
    cancel: asyncio.Event | None,
    grace: float,
    stdout_cap: int,
    stderr_cap: int,
) -> _Finished:
    """Run `argv` as the leader of a new process group; no process of the group outlives this."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,  # a session of its own: its pid is the group id we signal
        limit=_READ_CHUNK,
    )
    group = process.pid
    stdout, stderr = _Capped(stdout_cap), _Capped(stderr_cap)
    assert process.stdout is not None
    assert process.stderr is not None
    helpers = [
        asyncio.create_task(stdout.drain(process.stdout)),
        asyncio.create_task(stderr.drain(process.stderr)),
    ]
    if stdin is not None:
        assert process.stdin is not None
        helpers.append(asyncio.create_task(_feed(process.stdin, stdin)))
    try:
        stopped_by = await _wait(process, time_limit, cancel)
        await stop_group(group, grace)  # after a normal exit too: leftovers die with the run
        await _reap(process, helpers)
    except BaseException:
        _signal_group(group, signal.SIGKILL)  # our caller is going away: no time for grace
        await _reap(process, helpers)
        raise
    finally:
        for task in helpers:
            task.cancel()
    return _Finished(process.returncode, stopped_by, stdout, stderr)


async def _wait(
    process: asyncio.subprocess.Process, time_limit: float, cancel: asyncio.Event | None
) -> str | None:
    """None when the leader exited by itself, else "timeout" or "cancelled"."""
    exited = asyncio.ensure_future(_exit_status(process))
    cancelled = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
    waiters: set[asyncio.Future[Any]] = {exited} if cancelled is None else {exited, cancelled}
    try:
        await asyncio.wait(waiters, timeout=time_limit, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()  # a no-op for the finished one
    if exited.done() and not exited.cancelled():
        return None
    return "cancelled" if cancelled is not None and cancelled.done() else "timeout"


async def _exit_status(process: asyncio.subprocess.Process) -> int:
    """The leader's exit status, as soon as it is reaped.

    Not `process.wait()`: that also waits until every holder of the pipes has
    closed them, and a grandchild left in the background may hold them forever.
    No public asyncio API signals the exit alone, hence the short poll.
    """
    while process.returncode is None:  # noqa: ASYNC110 - see above
        await asyncio.sleep(_POLL_SECONDS)
    return process.returncode


def _remove_leftovers(scratch_dir: Path) -> None:
    for note in scratch_dir.glob(f"{OUTSIDE_NOTE}*"):
        with contextlib.suppress(OSError):
            Path(note.read_text(encoding="utf-8")).unlink(missing_ok=True)
    for leftover in scratch_dir.iterdir():
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _groups_with_marker(marker: str) -> set[int]:
    """Process groups whose members carry `marker` in their environment."""
    needle = marker.encode()
    groups: set[int] = set()
    for pid, environ in _environments():
        if any(entry.startswith(needle) for entry in environ):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                groups.add(os.getpgid(pid))
    groups.discard(os.getpgid(0))  # never our own group
    return groups


def _environments() -> Iterable[tuple[int, list[bytes]]]:
    """(pid, environment entries) of the processes we may inspect."""
    if os.path.isdir("/proc"):
        for name in os.listdir("/proc"):
            if name.isdigit():
                with contextlib.suppress(OSError):
                    yield int(name), Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
        return
    # macOS and the BSDs: `ps -E` appends each process's environment (own processes only).
    listing = subprocess.run(
        ["ps", "-E", "-ax", "-o", "pid=,command="],  # noqa: S607 - ps from the system PATH
        capture_output=True,
        check=False,
        timeout=10,
    ).stdout
    for line in listing.splitlines():
        pid, _, rest = line.strip().partition(b" ")
        if pid.isdigit():
            yield int(pid), rest.split(b" ")


async def stop_group(group: int, grace: float) -> None:
    """SIGTERM the group, give it `grace` seconds, SIGKILL whatever is left, and wait for it."""
    if not _signal_group(group, signal.SIGTERM):
        return
    if await _vanished(group, grace):
        return
    _signal_group(group, signal.SIGKILL)
    if not await _vanished(group, _REAP_SECONDS):
        logger.warning("process group still present after SIGKILL", group=group)


async def _vanished(group: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while _group_alive(group):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL_SECONDS)
    return True


def _group_alive(group: int) -> bool:
    """Whether a process of the group still runs.

    A zombie does not count: an orphan waits for init to reap it, and some
    inits reap late (every few seconds in some VMs) or never (a container
    whose PID 1 is not an init).
    """
    if not _signal_group(group, 0):
        return False
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:  # no /proc (macOS): the group exists, and that is all we can know
        return True
    return any(_runs_in(pid, group) for pid in pids)


def _runs_in(pid: str, group: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    state, _ppid, pgrp = stat.rsplit(b")", 1)[1].split()[:3]
    return int(pgrp) == group and state not in (b"Z", b"X")


def _signal_group(group: int, signum: int) -> bool:
    """Send `signum` (0: just probe) to the group; False when nothing of it is left."""
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # macOS answers EPERM for a group of zombies
        return False
    return True


async def _feed(pipe: asyncio.StreamWriter, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        pipe.write(data)
        await pipe.drain()
    pipe.close()  # end of file: the prompt is complete
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await pipe.wait_closed()


async def _reap(process: asyncio.subprocess.Process, helpers: list[asyncio.Task[None]]) -> None:
    """Once the group is dead: the leader's status, and the pipes read to end of file.

    Both are bounded. A pipe that a process which left the group still holds
    is abandoned rather than waited for.
    """
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_exit_status(process), _REAP_SECONDS)
    _, pending = await asyncio.wait(helpers, timeout=_PIPE_SECONDS)
    if pending:
        logger.warning(
            "output pipe still open after the process group ended; "
            "a process of the run left its group"
        )


async def probe_version(
    argv: Sequence[str], *, env: Mapping[str, str], time_limit: float
) -> tuple[str | None, str | None]:
    """(first line of `argv`'s output, None) or (None, why it failed); for `doctor`."""
    try:
        finished = await run_in_group(
            argv,
            env=env,
            cwd=None,
            stdin=None,
            time_limit=time_limit,
            cancel=None,
            grace=0.5,
            stdout_cap=4096,
            stderr_cap=4096,
        )
    except OSError as exc:
        return None, f"cannot run it: {exc.strerror or exc}"
    if finished.stopped_by:
        return None, f"no answer to {' '.join(argv[1:])} within {time_limit:g} s"
    text = finished.stdout.text().strip() or finished.stderr.text().strip()
    if finished.returncode != 0:
        return None, f"{' '.join(argv[1:])} failed with status {finished.returncode}: {tail(text)}"
    return (text.splitlines()[0] if text else None), None


# ----------------------------------------------------------------- results


class _Redactor:
    """Replaces secret values in everything a result carries (output, error, details)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted(
            {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True
        )

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, Mapping):
            return {key: self(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self(item) for item in value]
        return value

    def result(self, result: ExecutionResult) -> ExecutionResult:
        if not self.secrets:
            return result
        return ExecutionResult(
            output=self(result.output),
            error=self(result.error),
            exit_code=result.exit_code,
            exit_signal=result.exit_signal,
            exit_reason=result.exit_reason,
            duration_ms=result.duration_ms,
            details=self(result.details),
        )


def _failed(error: str, started: float) -> ExecutionResult:
    return ExecutionResult(
        output="",
        error=error,
        exit_code=None,
        exit_signal=None,
        exit_reason="error_message",
        duration_ms=_elapsed_ms(started),
    )


def _cancelled_before_start(cancel: asyncio.Event, started: float) -> ExecutionResult:
    return ExecutionResult(
        output="",
        error=f"run cancelled: {_cancel_reason(cancel)}",
        exit_code=None,
        exit_signal=None,
        exit_reason="cancelled",
        duration_ms=_elapsed_ms(started),
    )


def _cancel_reason(cancel: asyncio.Event) -> str:
    return (cancel.reason if isinstance(cancel, CancelEvent) else "") or CANCELLED_BY_AGENT


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
