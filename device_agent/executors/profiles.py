"""Executor profiles: the TOML files that say how to run each CLI agent.

Profiles are data: supporting another CLI takes a file,
not code. The shipped ones live in `executors/`; a file with the same name in
the user's `<config dir>/executors/` replaces the shipped one as a whole.
Loading checks everything a run would otherwise trip over later, and a
mistake is reported as `<file>: <key>: <what is wrong and what to do>`.

A profile (see executors/claude-code.toml for a commented one):

    binary = "claude"              # looked up on the child's PATH; "{python}" = this interpreter
    args = ["-p", "{options}", "{mcp}"]
    argv = ["my-agent", "--flag"]  # instead of binary + args (the `command` profile)
    prompt = "stdin"               # stdin | argument ("{prompt}") | file ("{prompt_file}")
    env = { NAME = "value" }       # added to the child's environment
    version_args = ["--version"]   # what `device-agent doctor` runs (with argv: nothing unless set)
    checked_version = "1.2.3"      # the CLI version this profile was checked against (doctor
                                   # warns when the one found differs)
    [options.model]                # execution_config key -> flags
    args = ["--model", "{value}"]
    values = { plan = "read-only" }  # optional: the values this CLI takes, translated
    [mcp]                          # how the Lobu MCP server is wired in
    [output]                       # which reader turns the output into a result, and
                                   # how the run's transcript is read from it (`transcript`)
"""

from __future__ import annotations

import re
import shutil
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, NoReturn, cast

from device_agent.errors import DeviceAgentError, ExitCode
from device_agent.executors.readers import (
    FileReader,
    JsonlReader,
    JsonReader,
    Match,
    Reader,
    TextReader,
)
from device_agent.executors.transcript import FORMATS as TRANSCRIPT_FORMATS
from device_agent.paths import shipped_dir
from device_agent.schema import Invalid, Spec

PromptMode = Literal["argument", "stdin", "file"]

PROMPT_MODES: Final = ("argument", "stdin", "file")
READERS: Final = ("text", "json", "jsonl", "file")
OPTIONS_SLOT: Final = "{options}"  # an args element replaced by the execution_config flags
MCP_SLOT: Final = "{mcp}"  # an args element replaced by the MCP flags
PRIVATE: Final = "private"  # [mcp] file = "private": a 0700 temp dir outside the workdir

VERSION: Final = ("--version",)
PLACEHOLDER: Final = re.compile(r"\{([a-z_]+)\}")
VERSION_NUMBER: Final = re.compile(r"\d+(?:\.\d+)+")
ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMON: Final = frozenset({"python", "python_path", "workdir"})
_ARGS: Final = _COMMON | {"prompt", "prompt_file", "output_file"}
# {mcp_url_toml}: the URL as a TOML string, quotes included (a `-c key=value` option).
_MCP_ARGS: Final = _COMMON | {"mcp_config", "mcp_url", "mcp_url_toml"}
_MCP_ENV: Final = _MCP_ARGS | {"mcp_config_json", "mcp_token"}
_MCP_CONFIG: Final = frozenset({"mcp_url", "mcp_token"})


# How a profile's plain values are checked: the same declarations as the config file's.
_TEXT: Final = Spec(str)
_FLAG: Final = Spec(bool)
_TEXTS: Final = Spec(tuple)


class ProfileError(DeviceAgentError):
    """A profile file is broken. The message names the file and the key."""

    exit_code = ExitCode.CONFIG
    prefix = "executor profile error: "


@dataclass(frozen=True)
class OptionFlags:
    """How one `execution_config` key becomes command-line flags."""

    args: tuple[str, ...]
    values: Mapping[str, str] | None = None  # None: any valid value, passed as is

    def render(self, value: str) -> tuple[str, ...] | None:
        """The flags for `value`, or None when this CLI has no equivalent of it."""
        if self.values is not None:
            if value not in self.values:
                return None
            value = self.values[value]
        return tuple(arg.replace("{value}", value) for arg in self.args)


@dataclass(frozen=True)
class HomeSpec:
    """[mcp.home]: the config goes into the settings file of a private stand-in for the
    CLI's home folder (device_agent/executors/cli_home.py)."""

    env: str  # the variable that names the CLI's home folder (Gemini: GEMINI_CLI_HOME)
    settings: str  # the settings file, relative to that folder: the user's own, merged under
    share: tuple[str, ...] = ()  # entries of the user's home linked in (globs, relative)


@dataclass(frozen=True)
class McpSpec:
    """How a CLI is pointed at the Lobu MCP server for one run."""

    config: Mapping[str, Any] | None = None  # JSON config; strings may hold {mcp_url} {mcp_token}
    file: str | None = None  # "private", or a path inside the run's workdir
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    home: HomeSpec | None = None  # the config goes into a private home's settings instead


@dataclass(frozen=True)
class Profile:
    name: str
    source: Path
    binary: str  # "" marks an unconfigured template (the shipped `command` profile)
    args: tuple[str, ...] = ()
    prompt: PromptMode = "stdin"
    reader: Reader = field(default_factory=TextReader)
    options: Mapping[str, OptionFlags] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    mcp: McpSpec | None = None
    version_args: tuple[str, ...] = VERSION  # () : doctor never runs it
    description: str = ""
    checked_version: str | None = None  # the CLI version this profile was checked against
    transcript: str = "text"  # the shape of its output a run's transcript is read from
    skip_lines: tuple[str, ...] = ()  # stdout lines starting so are neither kept nor read

    @property
    def configured(self) -> bool:
        return bool(self.binary)

    @property
    def program(self) -> str:
        return self.binary.replace("{python}", sys.executable)

    def resolve(self, path: str) -> str | None:
        """The binary's full path on `path` (a PATH value), or None."""
        return shutil.which(self.program, path=path) if self.configured else None


# ------------------------------------------------------------------ on this PATH


def default_agent_problem(profiles: Mapping[str, Profile], default: str, path: str) -> str | None:
    """Why runs that name no executor cannot run here (None: they can), as `doctor` and the
    start of `run` say it; `path` is the PATH the CLIs get."""
    profile = profiles.get(default)
    if profile is None:
        return (
            f"default_agent {default!r} is not an executor profile: use one of "
            f"{', '.join(sorted(profiles))} (`device-agent doctor` lists them)"
        )
    if not profile.configured:
        return f"default_agent {default!r} is not configured yet: set argv in {profile.source}"
    if profile.resolve(path) is None:
        return (
            f"default_agent {default!r} needs {profile.program}, which is not on the PATH the "
            f"agent gives CLIs: install it, set an absolute `binary` in a copy of "
            f"{profile.source.name} in the executors dir, or pick another with --agent"
        )
    return None


def found_executors(profiles: Mapping[str, Profile], path: str) -> dict[str, str | None]:
    """Each configured profile's binary on `path` (None where it is not found)."""
    return {name: p.resolve(path) for name, p in sorted(profiles.items()) if p.configured}


# ------------------------------------------------------------------ loading


def load_profiles(
    user_dir: Path | None = None, *, shipped: Path | None = None
) -> dict[str, Profile]:
    """The shipped profiles, each replaced by the user's file of the same name if there is one."""
    profiles: dict[str, Profile] = {}
    for directory in (shipped or shipped_dir("executors"), user_dir):
        if directory is not None and directory.is_dir():
            for path in sorted(directory.glob("*.toml")):
                profiles[path.stem] = load_profile(path)
    return profiles


def load_profile(path: Path) -> Profile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read it: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not UTF-8 text") from None
    return _parse(path, _Table(path, data))


def _parse(path: Path, top: _Table) -> Profile:
    top.allow(
        "description",
        "binary",
        "args",
        "argv",
        "prompt",
        "env",
        "options",
        "mcp",
        "output",
        "version_args",
        "checked_version",
    )
    binary, args = _command(top)
    prompt = cast(PromptMode, top.choice("prompt", PROMPT_MODES, default="stdin"))
    reader_table = top.table("output")
    reader = _reader(reader_table) if reader_table else TextReader()
    transcript, skip_lines = _stream(reader_table) if reader_table else ("text", ())
    options = _options(top.table("options"))
    mcp = _mcp(top.table("mcp"))
    env = top.string_map("env")
    for name, value in env.items():
        top.placeholders(f"env.{name}", value, _COMMON)
    profile = Profile(
        name=path.stem,
        source=path,
        binary=binary,
        args=args,
        prompt=prompt,
        reader=reader,
        options=options,
        env=env,
        mcp=mcp,
        # A command of one's own (argv) may do real work whatever its arguments: doctor runs
        # it only when its profile says how to ask its version.
        version_args=top.strings("version_args", default=() if "argv" in top.data else VERSION),
        description=top.string("description", default=""),
        checked_version=_checked_version(top),
        transcript=transcript,
        skip_lines=skip_lines,
    )
    if profile.configured:
        _check_slots(top, profile, args_key="argv" if "argv" in top.data else "args")
    return profile


def _checked_version(top: _Table) -> str | None:
    version = top.string("checked_version", default="") or None
    if version is not None and not VERSION_NUMBER.fullmatch(version):
        top.fail("checked_version", f'must be a version number such as "1.2.3", got {version!r}')
    return version


def _command(top: _Table) -> tuple[str, tuple[str, ...]]:
    if "argv" in top.data:
        if "binary" in top.data or "args" in top.data:
            top.fail("argv", "use either argv or binary + args, not both")
        argv = top.strings("argv")
        return (argv[0], argv[1:]) if argv else ("", ())  # argv = []: not configured yet
    binary = top.string("binary")
    if not binary.strip():
        top.fail("binary", 'must name a program, e.g. binary = "claude"')
    return binary, top.strings("args", default=())


def _check_slots(top: _Table, profile: Profile, *, args_key: str) -> None:
    """Every placeholder in args must be known, and the ones a mode relies on must be there."""
    args = profile.args
    for arg in args:
        if arg not in (OPTIONS_SLOT, MCP_SLOT):
            top.placeholders(args_key, arg, _ARGS)
    top.placeholders(
        "binary" if args_key == "args" else "argv", profile.binary, frozenset({"python"})
    )
    needs = {
        "{prompt}": (profile.prompt == "argument", 'prompt = "argument"'),
        "{prompt_file}": (profile.prompt == "file", 'prompt = "file"'),
        "{output_file}": (isinstance(profile.reader, FileReader), '[output] reader = "file"'),
    }
    for placeholder, (needed, setting) in needs.items():
        present = any(placeholder in arg for arg in args)
        if needed and not present:
            top.fail(args_key, f"must contain {placeholder} because of {setting}")
        if present and not needed:
            top.fail(args_key, f"uses {placeholder}, which needs {setting}")
    if profile.options and OPTIONS_SLOT not in args:
        top.fail(args_key, f'has [options] but no "{OPTIONS_SLOT}" element to put their flags in')
    if profile.mcp and MCP_SLOT not in args:
        top.fail(args_key, f'has [mcp] but no "{MCP_SLOT}" element to put its flags in')


def _options(table: _Table | None) -> dict[str, OptionFlags]:
    if table is None:
        return {}
    options: dict[str, OptionFlags] = {}
    for key in table.data:
        if key == "timeout_seconds":
            table.fail(key, "is enforced by the device agent itself and cannot map to a flag")
        option = table.table(key)
        if option is None:
            table.fail(key, 'must be a table, e.g. [options.model] args = ["--model", "{value}"]')
        option.allow("args", "values")
        args = option.strings("args")
        for arg in args:
            option.placeholders("args", arg, frozenset({"value"}))
        values = option.string_map("values") if "values" in option.data else None
        options[key] = OptionFlags(args=args, values=values)
    return options


def _mcp(table: _Table | None) -> McpSpec | None:
    if table is None:
        return None
    table.allow("config", "file", "args", "env", "home")
    config_table = table.table("config")
    config = config_table.data if config_table else None
    if config is not None:
        for where, text in _strings_in(config, "config"):
            table.placeholders(where, text, _MCP_CONFIG)
    file = table.string("file", default="") or None
    if file is not None and file != PRIVATE:
        relative = Path(file)
        if relative.is_absolute() or ".." in relative.parts:
            table.fail(
                "file", f'must be "{PRIVATE}" or a path inside the run\'s workdir, got {file!r}'
            )
    if file is not None and config is None:
        table.fail("file", "needs [mcp.config]: the config is what gets written to the file")
    args = table.strings("args", default=())
    for arg in args:
        if "{mcp_token}" in arg:
            table.fail(
                "args",
                "must not contain {mcp_token}: a token on a command line is "
                "visible to every local user; pass it through [mcp] env or config",
            )
        table.placeholders("args", arg, _MCP_ARGS)
    if any("{mcp_config}" in arg for arg in args) and file is None:
        table.fail("args", "uses {mcp_config} but [mcp] has no config and file")
    env = table.string_map("env")
    for name, value in env.items():
        table.placeholders(f"env.{name}", value, _MCP_ENV)
        if "{mcp_config_json}" in value and config is None:
            table.fail(f"env.{name}", "uses {mcp_config_json} but [mcp] has no config")
    home = _home(table)
    if home is not None and (file is not None or config is None):
        table.fail("home", "needs [mcp.config] (what goes into the settings) and no [mcp] file")
    in_env = any("{mcp_config_json}" in value for value in env.values())
    if config is not None and file is None and home is None and not in_env:
        table.fail(
            "config",
            "never reaches the CLI: set [mcp] file or [mcp.home], or pass it in [mcp] env "
            "with {mcp_config_json}",
        )
    return McpSpec(config=config, file=file, args=args, env=env, home=home)


def _home(mcp: _Table) -> HomeSpec | None:
    table = mcp.table("home")
    if table is None:
        return None
    table.allow("env", "settings", "share")
    env = table.string("env")
    if not ENV_NAME.fullmatch(env):
        table.fail("env", f"must be an environment variable's name, got {env!r}")
    paths = {"settings": (table.string("settings"),), "share": table.strings("share", default=())}
    for key, values in paths.items():
        for value in values:
            relative = Path(value)
            if not value or relative.is_absolute() or ".." in relative.parts:
                table.fail(key, f"must be a path inside the CLI's home folder, got {value!r}")
    return HomeSpec(env=env, settings=paths["settings"][0], share=paths["share"])


_STREAM_KEYS: Final = ("transcript", "skip_lines")  # [output] keys of every reader


def _stream(table: _Table) -> tuple[str, tuple[str, ...]]:
    """[output] transcript (which CLI's stream shape a transcript is read from) and skip_lines
    (stdout lines dropped as they arrive, e.g. pi's `message_update`, which repeat the whole
    message so far with every streamed piece of it)."""
    transcript = table.choice("transcript", TRANSCRIPT_FORMATS, default="text")
    skip_lines = table.strings("skip_lines", default=())
    if any(not prefix for prefix in skip_lines):
        table.fail("skip_lines", "must hold line beginnings, not empty strings")
    return transcript, skip_lines


def _reader(table: _Table) -> Reader:
    kind = table.choice("reader", READERS, default="text")
    if kind in ("text", "file"):
        table.allow("reader", *_STREAM_KEYS)
        return TextReader() if kind == "text" else FileReader()
    if kind == "json":
        table.allow("reader", "text", "failed_if", "error", "details", "stderr", *_STREAM_KEYS)
        return JsonReader(
            text=table.string("text"),
            failed_if=table.strings("failed_if", default=()),
            error=table.strings("error", default=()),
            details=table.string_map("details"),
            stderr=table.boolean("stderr", default=False),
        )
    table.allow(
        "reader",
        "final",
        "text",
        "failure_types",
        "failures",
        "error",
        "details",
        "join",
        *_STREAM_KEYS,
    )
    final = _match(table, "final", table.data.get("final", {}))
    if not final:
        table.fail("final", 'must say what the final event looks like, e.g. { type = "result" }')
    failures = table.data.get("failures", [])
    if not isinstance(failures, list) or not all(failures):
        table.fail(
            "failures", 'must be a list of tables, e.g. [{ type = "result", is_error = true }]'
        )
    details: dict[str, tuple[str, str]] = {}
    for name, spec in table.string_map("details").items():
        event_type, sep, path = spec.partition(":")
        if not (sep and event_type and path):
            table.fail(
                f"details.{name}",
                f"must be 'event_type:path' (or '*:path'), e.g. 'turn.completed:usage', "
                f"got {spec!r}",
            )
        details[name] = (event_type, path)
    return JsonlReader(
        final=final,
        text=table.string("text"),
        failure_types=table.strings("failure_types", default=()),
        failures=tuple(
            _match(table, f"failures.{index}", match) for index, match in enumerate(failures)
        ),
        error=table.strings("error", default=()),
        details=details,
        join=table.string("join", default="") or None,
    )


def _match(table: _Table, key: str, value: Any) -> Match:
    """What an event looks like: a table of dotted paths to strings, numbers or booleans."""
    if not isinstance(value, Mapping) or not all(
        isinstance(v, str | int | float | bool) for v in value.values()
    ):
        table.fail(
            key,
            'must be a table of paths to strings, numbers or booleans, e.g. { type = "result" }',
        )
    return dict(value)


def _strings_in(value: Any, where: str) -> Iterable[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings_in(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings_in(item, f"{where}.{index}")


class _Table:
    """One TOML table of a profile; every complaint names the file and the full key."""

    def __init__(self, source: Path, data: Mapping[str, Any], prefix: str = "") -> None:
        self.source = source
        self.data = data
        self.prefix = prefix

    def fail(self, key: str, message: str) -> NoReturn:
        raise ProfileError(f"{self.source}: {self.prefix}{key}: {message}")

    def allow(self, *keys: str) -> None:
        for key in self.data:
            if key not in keys:
                self.fail(key, f"unknown key: remove it or use one of {', '.join(keys)}")

    def string(self, key: str, *, default: str | None = None) -> str:
        value: str = self.checked(key, _TEXT, default)
        return value

    def choice(self, key: str, choices: tuple[str, ...], *, default: str) -> str:
        value: str = self.checked(key, Spec(str, choices=choices), default)
        return value

    def boolean(self, key: str, *, default: bool) -> bool:
        value: bool = self.checked(key, _FLAG, default)
        return value

    def strings(self, key: str, *, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
        value: tuple[str, ...] = self.checked(key, _TEXTS, default)
        return value

    def checked(self, key: str, spec: Spec, default: Any) -> Any:
        """The key's value (or `default`; None: required) checked as the config file's keys
        are (device_agent/schema.py)."""
        value = self.data.get(key, default)
        if value is None:
            self.fail(key, "is required")
        try:
            return spec.check(key, value)
        except Invalid as exc:
            self.fail(key, exc.problem)

    def string_map(self, key: str) -> dict[str, str]:
        value = self.data.get(key, {})
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            self.fail(key, f'must be a table of strings, e.g. {key} = {{ NAME = "value" }}')
        return dict(value)

    def table(self, key: str) -> _Table | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.fail(key, f"must be a table, got {value!r}")
        return _Table(self.source, value, f"{self.prefix}{key}.")

    def placeholders(self, key: str, text: str, allowed: frozenset[str]) -> None:
        for name in PLACEHOLDER.findall(text):
            if name not in allowed:
                self.fail(
                    key,
                    f"unknown placeholder {{{name}}} here; "
                    f"use {', '.join('{' + a + '}' for a in sorted(allowed))}",
                )
