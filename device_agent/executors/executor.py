"""Run one CLI agent for one run, and never raise past it.

A run goes through five steps (only the calling task's own cancellation
propagates, after the process group is dead):

1. prepare (`launch`): pick the profile, validate `execution_config`, make the
   workdir and a private 0700 directory, write the prompt and MCP files there,
   build the argv and the child's environment (never with our token in either);
2. run (`process`): start the CLI leading its own process group, feed the prompt
   on stdin or close stdin, drain stdout and stderr concurrently under caps, and
   wait for exit, timeout or cancellation;
3. stop (`process`): SIGTERM the whole group, `kill_grace_seconds`, SIGKILL —
   after a normal exit too, so that a grandchild left in the background dies with it;
4. read: the profile's reader turns the output into output, error and details, and
   what the run cost as the CLI reported it (the `usage` detail);
5. clean up: the private directory (the MCP config holds the token) and the
   temp workdir are removed whatever happened. With `tidy_in_background` the
   report is returned first and the removal goes on meanwhile: the next run
   need not wait for `rm -rf` of a cloned repository. `aclose()` waits for it,
   and a removal a killed agent never did is done by `recover()` at the next start.

A SIGKILL we did not send is reported as a crash, not as "oom": nothing
portable tells an out-of-memory kill apart from any other.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from device_agent.agent.result import TRUNCATED, ExitReason, Report, failure
from device_agent.config import ExecutorSettings
from device_agent.executors.execconfig import Refused
from device_agent.executors.launch import Launch, Launcher
from device_agent.executors.leftovers import recover_leftovers
from device_agent.executors.process import Finished, run_in_group, signal_name
from device_agent.executors.profiles import Profile
from device_agent.executors.readers import Captured, Reading, tail, usage_of, with_usage
from device_agent.executors.request import ExecutionRequest
from device_agent.executors.transcript import Round, read_round
from device_agent.logs import get_logger
from device_agent.redaction import SecretValues

logger = get_logger(__name__)

CANCELLED_BY_AGENT: Final = "stopped by the device agent"


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


class Executor:
    def __init__(
        self,
        settings: ExecutorSettings,
        profiles: Mapping[str, Profile],
        *,
        secrets: tuple[str, ...] = (),
        environ: Mapping[str, str] | None = None,
        scratch_dir: Path | None = None,
        tidy_in_background: bool = False,
    ) -> None:
        self.settings = settings
        self.profiles = profiles
        self.scratch_dir = scratch_dir
        self._secrets = secrets
        self._environ = environ
        self._tidy_in_background = tidy_in_background
        self._tidying: set[asyncio.Task[None]] = set()
        self._recovery: asyncio.Task[int] | None = None

    @functools.cached_property
    def launcher(self) -> Launcher:
        """Built at the first run."""
        return Launcher(
            self.settings,
            self.profiles,
            secrets=self._secrets,
            environ=self._environ,
            scratch_dir=self.scratch_dir,
        )

    def has_profile(self, agent_kind: str) -> bool:
        profile = self.profiles.get(agent_kind)
        return profile is not None and profile.configured

    def uses_mcp(self, agent_kind: str) -> bool:
        """Whether this kind's profile hands the CLI an MCP config (its `[mcp]` table)."""
        profile = self.profiles.get(agent_kind)
        return profile is not None and profile.mcp is not None

    async def execute(
        self,
        request: ExecutionRequest,
        *,
        cancel: asyncio.Event,
        on_output: Callable[[str], None] | None = None,
    ) -> Report:
        """Run the request's CLI; `on_output` sees what it prints as it prints it."""
        if self._recovery is not None and not self._recovery.done():
            await asyncio.wait({self._recovery})  # never alongside a killed agent's CLIs
        started = time.monotonic()
        began = time.time()  # for the transcript: when the round started, by the wall clock
        log = logger.bind(run_id=request.run_id, agent_kind=request.agent_kind)
        redact = SecretValues(self.launcher.secrets_of(request))
        if cancel.is_set():
            return _redacted(
                _with_prompt(_cancelled_before_start(cancel, started), request, began), redact
            )
        cleanup = contextlib.AsyncExitStack()
        try:
            launch = self.launcher.prepare(request, cleanup, log)
            live = LiveOutput(on_output, redact) if on_output is not None else None
            finished = await self._run(launch, cancel, log, live)
            if live is not None:
                live.flush()
            result = self._conclude(launch, finished, cancel, started, request, began)
        except Refused as exc:
            log.warning("run not started", error=redact.text(str(exc)))
            result = failure(str(exc), duration_ms=_elapsed_ms(started))
        except Exception as exc:  # a bug or an OS failure must fail this run, never the loop
            log.exception("executor failed")
            error = f"executor error: {type(exc).__name__}: {exc}"
            result = failure(error, duration_ms=_elapsed_ms(started))
        except BaseException:  # our own cancellation: the files go before we do
            await _tidy(cleanup, log)
            raise
        if self._tidy_in_background:
            task = asyncio.create_task(_tidy(cleanup, log))
            self._tidying.add(task)
            task.add_done_callback(self._tidying.discard)
        else:
            await _tidy(cleanup, log)
        result = _with_prompt(result, request, began)
        return _redacted(result, redact)  # the pipeline logs how it ended, in one line

    async def aclose(self) -> None:
        """Wait until the files of every finished run are removed, and a recovery still going
        on is done: a half-stopped orphan helps nobody."""
        if self._recovery is not None:
            await asyncio.wait({self._recovery})  # its outcome is for its own listeners
        while self._tidying:
            await asyncio.gather(*self._tidying)

    def recover_in_background(self) -> asyncio.Task[int]:
        """`recover()` as a task, so that the first poll need not wait for it to list every
        process's environment. A run claimed meanwhile waits in `execute` before its CLI
        starts."""
        self._recovery = asyncio.create_task(self.recover())
        return self._recovery

    async def recover(self) -> int:
        """After a previous agent for this home was killed: stop the CLIs it left running and
        delete the files it could not. Returns the number of process groups stopped."""
        if self.scratch_dir is None:
            return 0
        return await recover_leftovers(self.scratch_dir, grace=self.settings.kill_grace_seconds)

    # --------------------------------------------------------------- run

    async def _run(
        self,
        launch: Launch,
        cancel: asyncio.Event,
        log: Any,
        on_stdout: Callable[[bytes], None] | None,
    ) -> Finished:
        def started(pid: int) -> None:  # said once it runs, so the line can name its pid
            log.info(
                "CLI started",
                pid=pid,
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
                on_stdout=on_stdout,
                on_start=started,
                stdout_skip=tuple(prefix.encode() for prefix in launch.profile.skip_lines),
            )
        except FileNotFoundError:
            raise Refused(f"{launch.profile.program} binary not found on PATH") from None
        except PermissionError:
            raise Refused(f"{launch.argv[0]} is not executable") from None
        except OSError as exc:
            problem = exc.strerror or exc
            raise Refused(f"cannot start {launch.profile.program}: {problem}") from None

    # -------------------------------------------------------------- read

    def _conclude(
        self,
        launch: Launch,
        finished: Finished,
        cancel: asyncio.Event,
        started: float,
        request: ExecutionRequest,
        began: float,
    ) -> Report:
        stdout = finished.stdout.text()
        stderr_tail = tail(finished.stderr.last())
        last_words = stderr_tail or tail(finished.stdout.last())
        captured = Captured(
            stdout,
            finished.stderr.text(),
            _read_capped(launch.output_file, self.settings.stdout_cap_bytes),
            stdout_cut_at=self.settings.stdout_cap_bytes if finished.stdout.truncated else None,
        )
        reading = launch.profile.reader.read(captured)
        # What the run cost, by the CLI's own report: kept in the journal, counted against
        # the owner's daily limit (device_agent/agent/limits.py).
        usage = usage_of(launch.profile.name, launch.profile.program, captured)
        reading = with_usage(reading, usage)
        code = finished.returncode
        exit_code = code if code is not None and code >= 0 else None
        exit_signal = signal_name(-code) if code is not None and code < 0 else None
        name = Path(launch.profile.program).name
        note = f"; last output: {last_words}" if last_words else ""
        error: str | None
        if finished.stopped_by == "cancelled":
            reason, error = ExitReason.CANCELLED, f"run cancelled: {_cancel_reason(cancel)}"
        elif finished.stopped_by == "timeout":
            reason, error = ExitReason.TIMEOUT, f"timed out after {launch.timeout:g} s{note}"
        elif exit_signal is not None:
            reason, error = ExitReason.CRASH, f"{name} was killed by {exit_signal}{note}"
        elif reading.error:
            reason, error = ExitReason.ERROR_MESSAGE, reading.error
        elif code != 0:
            reason = ExitReason.ERROR_MESSAGE
            error = f"{name} exited with status {code}" + (f": {last_words}" if last_words else "")
        elif reading.problem:
            reason, error = ExitReason.ERROR_MESSAGE, f"{name}: {reading.problem}"
        else:
            reason, error = ExitReason.OK, None
        output = reading.output if error is None or reading.output else stdout
        return Report(
            output=output,
            error=error,
            exit_code=exit_code,
            exit_signal=exit_signal,
            exit_reason=reason,
            duration_ms=_elapsed_ms(started),
            details=self._details(launch, finished, reading),
            transcript=read_round(
                launch.profile.transcript,
                stdout,
                prompt=request.prompt,
                answer=reading.output,
                cwd=str(launch.cwd),
                started_at=began,
                finished_at=time.time(),
                usage=usage,
            ),
        )

    def _details(self, launch: Launch, finished: Finished, reading: Reading) -> dict[str, Any]:
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


async def _tidy(cleanup: contextlib.AsyncExitStack, log: Any) -> None:
    """Remove a run's files. A failure is logged, not raised: the run's result stands, and
    what is left in our scratch dir is removed by `recover()` at the next start."""
    try:
        await cleanup.aclose()
    except Exception:
        log.exception("could not remove the run's temporary files")


class LiveOutput:
    """What a CLI prints, decoded and redacted for `on_output` as it comes (the output tail
    `status` shows). Text that could be the start of a secret is held back until more
    arrives, so that a secret split across two reads is whole, and redacted, before any of
    it is passed on."""

    def __init__(self, on_output: Callable[[str], None], redact: SecretValues) -> None:
        self._on_output = on_output
        self._redact = redact
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # split chars
        self._held = ""

    def __call__(self, chunk: bytes) -> None:
        text = self._redact.text(self._held + self._decoder.decode(chunk))
        cut = len(text) - _secret_start_at_end(text, self._redact.secrets)
        self._held = text[cut:]
        if cut:
            self._on_output(text[:cut])

    def flush(self) -> None:
        """Pass on what was held back: the CLI has ended."""
        text = self._redact.text(self._held + self._decoder.decode(b"", final=True))
        self._held = ""
        if text:
            self._on_output(text)


def _secret_start_at_end(text: str, secrets: list[str]) -> int:
    """The length of the longest end of `text` that a secret starts with (0: none)."""
    longest = 0
    for secret in secrets:
        for size in range(min(len(secret) - 1, len(text)), longest, -1):
            if text.endswith(secret[:size]):
                longest = size
                break
    return longest


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


def _with_prompt(result: Report, request: ExecutionRequest, began: float) -> Report:
    """A round that ran no CLI still has its prompt in the run's transcript."""
    if result.transcript is not None:
        return result
    round_ = Round(prompt=request.prompt, started_at=began, finished_at=time.time())
    return dataclasses.replace(result, transcript=round_)


def _redacted(result: Report, redact: SecretValues) -> Report:
    if not redact.secrets:
        return result
    return dataclasses.replace(
        result,
        output=redact.text(result.output),
        error=redact.text(result.error) if result.error is not None else None,
        details=redact.deep(result.details),
        transcript=result.transcript.redacted(redact.text) if result.transcript else None,
    )


def _cancelled_before_start(cancel: asyncio.Event, started: float) -> Report:
    error = f"run cancelled: {_cancel_reason(cancel)}"
    return failure(error, exit_reason=ExitReason.CANCELLED, duration_ms=_elapsed_ms(started))


def _cancel_reason(cancel: asyncio.Event) -> str:
    return (cancel.reason if isinstance(cancel, CancelEvent) else "") or CANCELLED_BY_AGENT


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
