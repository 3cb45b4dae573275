"""Build a run's launch: argv, environment, workdir and private files, ready to start.

Never with our token in argv or in the inherited environment; the prompt and
any MCP config (which holds the token) are written 0600 into a private 0700
directory, and every file is removed again by the caller's cleanup stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from device_agent.config import ExecutorSettings
from device_agent.executors import cli_home
from device_agent.executors.environment import child_environment
from device_agent.executors.execconfig import Refused, check_consent, option_flags, timeout_of
from device_agent.executors.leftovers import OUTSIDE_NOTE, RUN_MARKER
from device_agent.executors.profiles import (
    MCP_SLOT,
    OPTIONS_SLOT,
    PLACEHOLDER,
    PRIVATE,
    HomeSpec,
    Profile,
)
from device_agent.executors.readers import FileReader
from device_agent.executors.request import ExecutionRequest
from device_agent.redaction import worth_hiding

_PACKAGE_PARENT: Final = str(Path(__file__).resolve().parent.parent)
# What no URL holds and a CLI's config could trip over: spaces, quotes, backslashes, controls.
_NOT_IN_A_URL: Final = re.compile(r"[\s\"'\\\x00-\x1f\x7f]")
_TOML_ESCAPED: Final = re.compile(r'["\\\x00-\x1f\x7f]')


@dataclass(frozen=True)
class Launch:
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


class Launcher:
    """Turns a request into a `Launch` with the user's profiles and settings."""

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
        self._told_no_mcp: set[str] = set()  # profiles already said to run without the tools

    def prepare(
        self, request: ExecutionRequest, cleanup: contextlib.AsyncExitStack, log: Any
    ) -> Launch:
        """Check the request, write its private files and build argv and environment.
        Raises `Refused` when the run cannot start; `cleanup` removes whatever was made."""
        profile = self.profiles.get(request.agent_kind)
        if profile is None or not profile.configured:
            hint = f" (set argv in {profile.source.name} in the config dir)" if profile else ""
            raise Refused(
                f"no local agent executor configured for agent_kind='{request.agent_kind}'{hint}"
            )
        config = request.execution_config or {}
        timeout = timeout_of(config)
        flags, ignored = option_flags(profile, config)
        check_consent(profile, config, self.settings.allowed_permission_modes)
        if ignored:
            log.debug("execution_config keys this CLI has no flag for; ignored", keys=ignored)
        secrets = self.secrets_of(request)
        env = child_environment(self.environ, self.settings, secrets=secrets)
        binary = profile.resolve(env["PATH"])
        if binary is None:
            raise Refused(f"{profile.program} binary not found on PATH")

        workdir = self._workdir(request.run_id, cleanup)
        private = PrivateDir(f"device-agent-{request.run_id}-", self._scratch, cleanup)
        values = {
            "{python}": sys.executable,
            "{python_path}": _PACKAGE_PARENT,
            "{workdir}": str(workdir),
        }
        stdin = _hand_over_prompt(profile, request.prompt, private, values, cleanup)
        output_file = private / "output.txt" if isinstance(profile.reader, FileReader) else None
        if output_file is not None:
            values["{output_file}"] = str(output_file)

        mcp_args, mcp_env = self._wire_mcp(
            profile, request, workdir, private, values, env, cleanup, log
        )
        slots = {OPTIONS_SLOT: flags, MCP_SLOT: mcp_args}
        argv = [binary, *_expand(profile.args, values, slots), *request.args]
        if any(secret in arg for arg in argv for secret in secrets):
            raise Refused("refusing to start: a secret would appear on the command line")
        env.update({name: _fill(value, values) for name, value in profile.env.items()})
        env.update(mcp_env)
        env.update(request.env)  # after the filter, which would drop a credential
        if self.scratch_dir is not None:
            env[RUN_MARKER] = f"{self.scratch_dir}{os.sep}{request.run_id}"
        elided = {**values, "{prompt}": f"<prompt: {len(request.prompt)} characters>"}
        return Launch(
            profile=profile,
            argv=argv,
            shown_argv=[binary, *_expand(profile.args, elided, slots), *request.args],
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

    def secrets_of(self, request: ExecutionRequest) -> tuple[str, ...]:
        """Values that must not reach a child's argv or inherited environment, nor a result."""
        mcp_token = request.mcp.token if request.mcp else ""
        return tuple(worth_hiding((*self.secrets, *request.secrets, mcp_token)))

    def _workdir(self, run_id: int, cleanup: contextlib.AsyncExitStack) -> Path:
        if self.settings.workdir is not None:
            self.settings.workdir.mkdir(parents=True, exist_ok=True)
            return self.settings.workdir  # the user's directory: never removed
        workdir = Path(tempfile.mkdtemp(prefix=f"device-agent-run-{run_id}-", dir=self._scratch()))
        if not self.settings.keep_workdir:
            cleanup.push_async_callback(_remove_workdir, workdir)
        return workdir

    def _wire_mcp(
        self,
        profile: Profile,
        request: ExecutionRequest,
        workdir: Path,
        private: PrivateDir,
        values: Mapping[str, str],
        environ: Mapping[str, str],
        cleanup: contextlib.AsyncExitStack,
        log: Any,
    ) -> tuple[list[str], dict[str, str]]:
        """The MCP flags and environment for this run (`environ`: the child's, so far); the
        config file is gone when the run is."""
        spec, wiring = profile.mcp, request.mcp
        if not self.settings.mcp:
            return [], {}
        if spec is None:
            if profile.name not in self._told_no_mcp:  # once: it is so for every run of it
                self._told_no_mcp.add(profile.name)
                log.debug("this profile has no [mcp] table; the CLI runs without the Lobu tools")
            return [], {}
        if wiring is None:
            return [], {}
        url = _checked_url(wiring.url)
        values = {
            **values,
            "{mcp_url}": url,
            "{mcp_url_toml}": toml_string(url),  # for a TOML value on the command line (codex -c)
            "{mcp_token}": wiring.token,
        }
        filled = _fill_deep(spec.config, values) if spec.config is not None else None
        config = json.dumps(filled) if filled is not None else ""
        path: Path | None = None
        home_env: dict[str, str] = {}
        if spec.home is not None:
            made = _private_home(spec.home, filled or {}, environ, private, cleanup, log)
            if made is None:
                return [], {}
            home, path = made
            home_env[spec.home.env] = str(home)
        elif spec.file == PRIVATE:
            path = _write_private(private / "mcp.json", config, cleanup, inside=private.path)
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
        return args, {**env, **home_env}


def _private_home(
    spec: HomeSpec,
    config: Mapping[str, Any],
    environ: Mapping[str, str],
    private: PrivateDir,
    cleanup: contextlib.AsyncExitStack,
    log: Any,
) -> tuple[Path, Path] | None:
    """The run's stand-in for the CLI's home folder and its settings file (the user's own
    with `config` merged in; device_agent/executors/cli_home.py); None when the user's own
    settings cannot be read, and then the run goes on without the Lobu tools."""
    own = cli_home.user_home(spec, environ)
    try:
        settings = cli_home.merged(cli_home.own_settings(own / spec.settings), config)
    except cli_home.UnreadableSettings as exc:
        log.warning(
            "cannot add the Lobu tools to the CLI's own settings: fix that file; this run "
            "has no Lobu tools",
            problem=str(exc),
        )
        return None
    home = private / "home"
    text = json.dumps(settings, indent=2)
    path = _write_private(home / spec.settings, text, cleanup, inside=private.path)
    cli_home.link_shared(spec, own, home)
    return home, path


async def _remove_workdir(workdir: Path) -> None:
    """Most runs leave their workdir empty: one rmdir, no thread. A CLI may have cloned a
    repository into it, though: anything more is removed off the event loop."""
    try:
        os.rmdir(workdir)
    except OSError:
        await asyncio.to_thread(shutil.rmtree, workdir, True)


class PrivateDir:
    """A run's 0700 folder for the files only we may read (a prompt file, an MCP config, an
    output file), made on first use: most runs need none, and then none is made or removed."""

    def __init__(
        self, prefix: str, parent: Callable[[], str | None], cleanup: contextlib.AsyncExitStack
    ) -> None:
        self._prefix, self._parent, self._cleanup = prefix, parent, cleanup

    @functools.cached_property
    def path(self) -> Path:
        made = Path(tempfile.mkdtemp(prefix=self._prefix, dir=self._parent()))
        self._cleanup.callback(shutil.rmtree, made, ignore_errors=True)
        return made

    def __truediv__(self, name: str) -> Path:
        return self.path / name


def _hand_over_prompt(
    profile: Profile,
    prompt: str,
    private: PrivateDir,
    values: dict[str, str],
    cleanup: contextlib.AsyncExitStack,
) -> bytes | None:
    """The bytes for stdin, or None after putting the prompt in `values` for argv."""
    if profile.prompt == "stdin":
        return prompt.encode("utf-8", errors="replace")
    if profile.prompt == "file":
        values["{prompt_file}"] = str(
            _write_private(private / "prompt.md", prompt, cleanup, inside=private.path)
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


def _checked_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or _NOT_IN_A_URL.search(url):
        raise Refused(f"the MCP URL {url!r} is not a plain http(s) URL")
    return url


def toml_string(text: str) -> str:
    """`text` as a TOML basic string, quotes included: `"`, `\\` and control characters are
    written as \\uXXXX escapes, so that nothing in it can end the string or add a key."""
    return '"' + _TOML_ESCAPED.sub(lambda m: f"\\u{ord(m.group()):04X}", text) + '"'


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
