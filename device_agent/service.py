"""`device-agent service install | uninstall | start | stop | status`.

macOS: a LaunchAgent in ~/Library/LaunchAgents, loaded with
`launchctl bootstrap gui/<uid>`. Linux: a systemd *user* unit of
`Type=notify`. Both are rendered from the templates in `config/`.

Every change is first a plan — files to write or remove, commands to run —
so `--dry-run` prints exactly what a real run would do, and the service
manager is reached through one injectable `Runner` (argv lists, no shell)
that tests replace at the process boundary.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import plistlib
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from device_agent.auth.store import usable_keyring
from device_agent.environment import extended_path
from device_agent.resources import shipped_dir
from device_agent.settings import ENV_TOKEN, Settings

LABEL: Final = "com.lobu.device-agent"
TRAY_LABEL: Final = "com.lobu.device-agent.tray"
UNIT: Final = "device-agent.service"
ENV_SUPERVISOR: Final = "DEVICE_AGENT_SUPERVISOR"
# Set at install time, these travel into the service so it finds the same home and server.
PASSED_ON: Final = (
    "DEVICE_AGENT_HOME",
    "DEVICE_AGENT_CONFIG",
    "DEVICE_AGENT_SERVER",
    "DEVICE_AGENT_WORKER_ID",
)
STOP_MARGIN_SECONDS: Final = 20  # beyond the drain: report the cancelled runs, close the journal
WATCHDOG_SECONDS: Final = 60


class ServiceError(Exception):
    """Installing or controlling the service failed; the message says what to do."""


# ------------------------------------------------------------------ what to install


@dataclass(frozen=True)
class ServiceSpec:
    """Everything the templates need, gathered once from settings and the environment."""

    program: tuple[str, ...]  # the argv prefix that runs *this* device-agent
    path: str  # the PATH the CLIs need
    environment: Mapping[str, str]  # DEVICE_AGENT_* passed on, never the token
    home: Path
    log_dir: Path
    state_dir: Path
    stop_timeout: int
    uid: int
    env_file_token: str | None = field(default=None, repr=False)  # only without a keyring

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        environ: Mapping[str, str] | None = None,
        argv0: str | None = None,
        home: Path | None = None,
        keyring_usable: bool | None = None,
    ) -> ServiceSpec:
        env = os.environ if environ is None else environ
        home = Path.home() if home is None else home
        program = this_program(sys.argv[0] if argv0 is None else argv0, sys.executable)
        usable = has_keyring() if keyring_usable is None else keyring_usable
        grace = settings.shutdown_grace_seconds + settings.executor.kill_grace_seconds
        return cls(
            program=program,
            path=service_path(env.get("PATH", os.defpath), home=home, program=program),
            environment={name: env[name] for name in PASSED_ON if env.get(name)},
            home=home,
            log_dir=settings.paths.log_dir.absolute(),
            state_dir=settings.paths.state_dir.absolute(),
            stop_timeout=math.ceil(grace) + STOP_MARGIN_SECONDS,
            uid=os.getuid(),
            env_file_token=None if usable else settings.token,
        )

    @property
    def env_file(self) -> Path:
        return self.state_dir / "service.env"


def this_program(argv0: str, python: str) -> tuple[str, ...]:
    """The absolute command that runs this device-agent, whatever PATH the service has."""
    candidate = Path(argv0)
    if candidate.suffix != ".py" and candidate.name != "-c":
        found = shutil.which(argv0) if os.sep not in argv0 else argv0
        if found and os.access(found, os.X_OK):
            return (str(Path(found).absolute()),)
    # `python -m device_agent` or a test runner: the same interpreter, as a module.
    return (str(Path(python).absolute()), "-m", "device_agent")


def service_path(path: str, *, home: Path, program: Sequence[str]) -> str:
    """The user's PATH now, plus where CLI agents usually live, plus our own bin dir.

    launchd and systemd start services with a bare PATH in which `claude` or
    `codex` are rarely found; this is the PATH `doctor` checks the CLIs with.
    """
    extended = extended_path(path, home=home).split(os.pathsep)
    entries = [*extended, str(Path(program[0]).parent)]
    return os.pathsep.join(dict.fromkeys(e for e in entries if os.path.isabs(e)))


def has_keyring() -> bool:
    """The same answer the token store gives: a plaintext "keyring" (keyrings.alt) is none."""
    return usable_keyring() is not None


def supervised_exit_code(code: int, environ: Mapping[str, str] | None = None) -> int:
    """The exit code `run` should end with under launchd: 0 for errors a restart cannot fix.

    launchd's KeepAlive restarts every unsuccessful exit; a configuration (2) or
    login (3) problem would then restart every ThrottleInterval for ever.
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_SUPERVISOR) == "launchd" and code in (2, 3):
        return 0
    return code


# ------------------------------------------------------------------ steps


@dataclass(frozen=True)
class WriteFile:
    path: Path
    content: str = field(repr=False)
    mode: int = 0o644
    secret: bool = False  # never printed by --dry-run


@dataclass(frozen=True)
class RemoveFile:
    path: Path
    keep: Path | None = None  # folders up to here that the removal leaves empty go too


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    tolerate_failure: bool = False  # e.g. unloading a service that is not loaded


Step = WriteFile | RemoveFile | Command
Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """The real runner: no shell, output captured, never waits for ever."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def describe(step: Step) -> str:
    if isinstance(step, WriteFile):
        if step.secret:
            return f"write {step.path} (mode {step.mode:04o}): <hidden: holds your token>"
        body = "".join(f"    {line}\n" for line in step.content.splitlines())
        return f"write {step.path} (mode {step.mode:04o}):\n{body}".rstrip("\n")
    if isinstance(step, RemoveFile):
        return f"remove {step.path}"
    return "run: " + " ".join(_shown_arg(arg) for arg in step.argv)


def _shown_arg(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else repr(arg)


def apply(steps: Iterable[Step], runner: Runner, *, hint: str) -> None:
    for step in steps:
        if isinstance(step, WriteFile):
            write_atomically(step.path, step.content, step.mode)
        elif isinstance(step, RemoveFile):
            with contextlib.suppress(FileNotFoundError):
                step.path.unlink()
            _remove_empty_parents(step.path, step.keep)
        else:
            result = call(runner, step.argv, hint=hint)
            if result.returncode != 0 and not step.tolerate_failure:
                raise ServiceError(_failed(step.argv, result, hint))


def _remove_empty_parents(path: Path, keep: Path | None) -> None:
    """Take away the folders install made for `path`, stopping at `keep` or a non-empty one."""
    if keep is None:
        return
    for folder in path.parents:
        if folder == keep or not folder.is_relative_to(keep):
            return
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (or not ours to remove): stop here


def call(runner: Runner, argv: Sequence[str], *, hint: str) -> subprocess.CompletedProcess[str]:
    try:
        return runner(argv)
    except FileNotFoundError:
        raise ServiceError(f"{argv[0]} not found: {hint}") from None
    except subprocess.TimeoutExpired:
        raise ServiceError(f"`{' '.join(argv)}` did not finish within 2 minutes: {hint}") from None


def _failed(argv: Sequence[str], result: subprocess.CompletedProcess[str], hint: str) -> str:
    said = (result.stderr or result.stdout or "").strip().splitlines()
    detail = f": {said[-1]}" if said else ""
    return f"`{' '.join(argv)}` failed (exit {result.returncode}){detail} — {hint}"


def write_atomically(path: Path, content: str, mode: int) -> None:
    """Readers see the old file or the new one; a secret file is never readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(content)
    os.chmod(tmp, mode)  # the umask may have taken bits away
    os.replace(tmp, path)


def unchanged(step: WriteFile) -> bool:
    try:
        return step.path.read_text(encoding="utf-8") == step.content
    except (FileNotFoundError, UnicodeDecodeError):
        return False


# ------------------------------------------------------------------ templates


def template(name: str) -> str:
    return (shipped_dir("config") / name).read_text(encoding="utf-8")


def fill_plist(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """A plist template, read by plistlib and filled in: dumped, it is always a valid plist."""
    data = plistlib.loads(template(name).encode())
    filled: dict[str, Any] = _fill(data, values)
    return filled


def _fill(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, dict):
        return {key: _fill(item, values) for key, item in value.items()}
    if isinstance(value, list):
        filled: list[Any] = []
        for item in value:
            result = _fill(item, values)
            if isinstance(item, str) and isinstance(result, list):
                filled.extend(result)  # "@PROGRAM@" stands for several arguments
            else:
                filled.append(result)
        return filled
    if isinstance(value, str):
        whole = re.fullmatch(r"@([A-Z_]+)@", value)
        if whole:
            return values[whole.group(1)]
        return re.sub(r"@([A-Z_]+)@", lambda m: str(values[m.group(1)]), value)
    return value


def render_text(name: str, values: Mapping[str, str]) -> str:
    """Fill a text template; a placeholder filled with "" takes its line with it."""
    lines = []
    for line in template(name).splitlines():
        if re.fullmatch(r"@[A-Z_]+@", line.strip()) and not values[line.strip()[1:-1]]:
            continue
        lines.append(re.sub(r"@([A-Z_]+)@", lambda m: values[m.group(1)], line))
    return "\n".join(lines) + "\n"


def systemd_quote(arg: str, *, command: bool = False) -> str:
    """One word of an Environment= line (or ExecStart=, `command`), taken literally by systemd."""
    escaped = _one_line(arg).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if command:
        escaped = escaped.replace("$", "$$")  # ExecStart= expands $VARIABLES, even in quotes
    return f'"{escaped}"'


def systemd_path(path: Path) -> str:
    """The value of a path setting such as EnvironmentFile=, which takes no quotes."""
    return _one_line(str(path)).replace("%", "%%")


def _one_line(arg: str) -> str:
    if "\n" in arg:
        raise ServiceError(f"{arg!r} contains a line break: install device-agent at another path")
    return arg


def desktop_exec(argv: Sequence[str]) -> str:
    """The Exec= value of an XDG .desktop file; refuse what its quoting rules make fragile."""
    words = []
    for arg in argv:
        if re.search(r'["`$\\\n]', arg):
            raise ServiceError(
                f"{arg!r} contains characters an autostart entry cannot quote safely: "
                "install device-agent at a plainer path, or start the tray yourself"
            )
        quoted = f'"{arg}"' if re.search(r"[\s'<>~|&;*?#()]", arg) else arg
        words.append(quoted.replace("%", "%%"))
    return " ".join(words)


# ------------------------------------------------------------------ service managers


class ServiceManager(Protocol):
    name: str
    hint: str

    def install(self, *, with_tray: bool) -> list[Step]: ...

    def uninstall(self) -> list[Step]: ...

    def start(self) -> list[Step]: ...

    def stop(self) -> list[Step]: ...

    def status(self) -> str: ...

    def notes(self) -> list[str]: ...


class Launchd:
    name = "launchd"
    hint = (
        "`service` on macOS needs launchctl (/bin/launchctl) and a logged-in GUI session; "
        "run `device-agent run` in a terminal meanwhile"
    )

    def __init__(self, spec: ServiceSpec, runner: Runner = run_command) -> None:
        self.spec = spec
        self.runner = runner
        self.agents_dir = spec.home / "Library" / "LaunchAgents"
        self.domain = f"gui/{spec.uid}"

    def plist_path(self, label: str) -> Path:
        return self.agents_dir / f"{label}.plist"

    def files(self, *, with_tray: bool) -> dict[str, WriteFile]:
        files = {LABEL: self._render("com.lobu.device-agent.plist", LABEL)}
        if with_tray:
            files[TRAY_LABEL] = self._render("com.lobu.device-agent.tray.plist", TRAY_LABEL)
        return files

    def _render(self, template_name: str, label: str) -> WriteFile:
        spec = self.spec
        values = {
            "LABEL": label,
            "PROGRAM": list(spec.program),
            "PATH": spec.path,
            "LOG_DIR": str(spec.log_dir),
            "STOP_TIMEOUT": spec.stop_timeout,
        }
        data = fill_plist(template_name, values)
        data["EnvironmentVariables"].update(spec.environment)  # the tray must find the same home
        return WriteFile(self.plist_path(label), plistlib.dumps(data, sort_keys=False).decode())

    def install(self, *, with_tray: bool) -> list[Step]:
        steps: list[Step] = []
        for label, file in self.files(with_tray=with_tray).items():
            if unchanged(file) and self._loaded(label):
                continue  # installed as it is now: leave the running agent alone
            steps += [
                file,
                self._bootout(label),
                Command(("launchctl", "bootstrap", self.domain, str(file.path))),
            ]
        if not with_tray and self.plist_path(TRAY_LABEL).exists():
            steps += self._remove(TRAY_LABEL)  # installed without the tray this time
        return steps

    def uninstall(self) -> list[Step]:
        return [*self._remove(TRAY_LABEL), *self._remove(LABEL)]

    def _remove(self, label: str) -> list[Step]:
        return [
            self._bootout(label),
            RemoveFile(self.plist_path(label), keep=self.spec.home / "Library"),
        ]

    def start(self) -> list[Step]:
        plist = self._installed()
        if self._loaded(LABEL):
            return [Command(("launchctl", "kickstart", f"{self.domain}/{LABEL}"))]
        return [Command(("launchctl", "bootstrap", self.domain, str(plist)))]

    def stop(self) -> list[Step]:
        self._installed()
        # bootout, not kill: a KeepAlive job that is merely killed is started again.
        return [self._bootout(LABEL)]

    def _bootout(self, label: str) -> Command:
        """Unload a job; not being loaded already is no failure."""
        return Command(("launchctl", "bootout", f"{self.domain}/{label}"), tolerate_failure=True)

    def status(self) -> str:
        if not self.plist_path(LABEL).exists():
            return "not installed (run `device-agent service install`)"
        result = self._print(LABEL)
        if result.returncode != 0:
            return "installed, not loaded (run `device-agent service start`)"
        fields = dict(re.findall(r"^\s*(state|pid|last exit code) = (.+)$", result.stdout, re.M))
        shown = ", ".join(f"{key} {value}" for key, value in fields.items())
        return f"installed, loaded ({shown or 'no details'})"

    def notes(self) -> list[str]:
        return [f"logs: {self.spec.log_dir}", "stop: device-agent service stop"]

    def _loaded(self, label: str) -> bool:
        return self._print(label).returncode == 0

    def _print(self, label: str) -> subprocess.CompletedProcess[str]:
        argv = ("launchctl", "print", f"{self.domain}/{label}")
        return call(self.runner, argv, hint=self.hint)

    def _installed(self) -> Path:
        plist = self.plist_path(LABEL)
        if not plist.exists():
            raise ServiceError("the service is not installed: run `device-agent service install`")
        return plist


class Systemd:
    name = "systemd"
    hint = (
        "`service` on Linux needs a systemd user manager (`systemctl --user status` must work; "
        "over ssh, log in once or run `loginctl enable-linger $USER`); without systemd, run "
        "`device-agent run` under your own supervisor"
    )

    def __init__(self, spec: ServiceSpec, runner: Runner = run_command) -> None:
        self.spec = spec
        self.runner = runner
        self.config_home = spec.home / ".config"
        self.unit_path = self.config_home / "systemd" / "user" / UNIT
        self.autostart_path = self.config_home / "autostart" / "device-agent-tray.desktop"

    def files(self, *, with_tray: bool) -> list[WriteFile]:
        spec = self.spec
        environment = [f"PATH={spec.path}", *(f"{k}={v}" for k, v in spec.environment.items())]
        lines = [f"Environment={systemd_quote(item)}" for item in environment]
        if spec.env_file_token:
            lines.append(f"EnvironmentFile={systemd_path(spec.env_file)}")
        unit = render_text(
            UNIT,
            {
                "EXEC_START": " ".join(
                    systemd_quote(arg, command=True) for arg in (*spec.program, "run")
                ),
                "ENVIRONMENT": "\n".join(lines),
                "STOP_TIMEOUT": str(spec.stop_timeout),
                "WATCHDOG": str(WATCHDOG_SECONDS),
            },
        )
        files = [WriteFile(self.unit_path, unit)]
        if spec.env_file_token:
            token = spec.env_file_token
            if not re.fullmatch(r"[\x21-\x7e]+", token) or re.search(r"[\"'\\$]", token):
                raise ServiceError(
                    "the token has characters an environment file cannot hold: log in again"
                )
            files.append(WriteFile(spec.env_file, f"{ENV_TOKEN}={token}\n", 0o600, secret=True))
        if with_tray:
            entry = render_text(
                "device-agent-tray.desktop", {"EXEC": desktop_exec((*spec.program, "tray"))}
            )
            files.append(WriteFile(self.autostart_path, entry))
        return files

    def install(self, *, with_tray: bool) -> list[Step]:
        files = self.files(with_tray=with_tray)
        changed = [file for file in files if not unchanged(file)]
        steps: list[Step] = [*changed]
        if not with_tray and self.autostart_path.exists():
            steps.append(RemoveFile(self.autostart_path, keep=self.config_home))
        if not self.spec.env_file_token and self.spec.env_file.exists():
            steps.append(RemoveFile(self.spec.env_file))  # the keyring holds the token now
        steps += [
            self._systemctl("daemon-reload"),
            self._systemctl("enable", "--now", UNIT),
        ]
        if any(file.path in (self.unit_path, self.spec.env_file) for file in changed):
            steps.append(self._systemctl("try-restart", UNIT))  # a running agent takes the change
        return steps

    def uninstall(self) -> list[Step]:
        return [
            Command(self._systemctl("disable", "--now", UNIT).argv, tolerate_failure=True),
            RemoveFile(self.unit_path, keep=self.config_home),
            RemoveFile(self.spec.env_file),
            RemoveFile(self.autostart_path, keep=self.config_home),
            self._systemctl("daemon-reload"),
            Command(self._systemctl("reset-failed", UNIT).argv, tolerate_failure=True),
        ]

    def start(self) -> list[Step]:
        self._installed()
        return [self._systemctl("start", UNIT)]

    def stop(self) -> list[Step]:
        self._installed()
        return [self._systemctl("stop", UNIT)]

    def status(self) -> str:
        if not self.unit_path.exists():
            return "not installed (run `device-agent service install`)"
        argv = self._systemctl(
            "show", UNIT, "--property=ActiveState,SubState,MainPID,ExecMainStatus,NRestarts"
        ).argv
        result = call(self.runner, argv, hint=self.hint)
        if result.returncode != 0:
            raise ServiceError(_failed(argv, result, self.hint))
        props = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        state = f"{props.get('ActiveState', '?')} ({props.get('SubState', '?')})"
        details = [f"pid {props['MainPID']}"] if props.get("MainPID", "0") != "0" else []
        if props.get("ExecMainStatus", "0") != "0":
            details.append(f"last exit code {props['ExecMainStatus']}")
        if props.get("NRestarts", "0") != "0":
            details.append(f"restarted {props['NRestarts']} times")
        return f"installed, {state}" + (f", {', '.join(details)}" if details else "")

    def notes(self) -> list[str]:
        notes = [
            "logs: journalctl --user -u device-agent (and the agent's own log in "
            f"{self.spec.log_dir})",
            'to keep it running while you are logged out: loginctl enable-linger "$USER"',
        ]
        if self.spec.env_file_token:
            notes.append(
                f"no usable keyring: the token is in {self.spec.env_file} (mode 0600); "
                "run `device-agent service install` again after a new login"
            )
        return notes

    def _systemctl(self, *args: str) -> Command:
        return Command(("systemctl", "--user", *args))

    def _installed(self) -> None:
        if not self.unit_path.exists():
            raise ServiceError("the service is not installed: run `device-agent service install`")


def manager_for(spec: ServiceSpec, runner: Runner, platform: str = sys.platform) -> ServiceManager:
    if platform == "darwin":
        return Launchd(spec, runner)
    if platform.startswith("linux"):
        return Systemd(spec, runner)
    raise ServiceError(
        f"`service` supports macOS (launchd) and Linux (systemd), not {platform}: "
        "run `device-agent run` under your own supervisor"
    )


# ------------------------------------------------------------------ command line

ACTIONS: Final = ("install", "uninstall", "start", "stop", "status")


def add_arguments(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser] = (),
) -> argparse.ArgumentParser:
    """Add `service ACTION [--dry-run] [--with-tray]`; the caller then calls `main`."""
    parser = subparsers.add_parser(
        "service",
        parents=list(parents),
        help="run the agent as a launchd/systemd user service",
        description="Install, remove, start, stop or inspect the agent's user service.",
    )
    parser.add_argument(
        "action", choices=ACTIONS, help="install, uninstall, start, stop or show the service"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be written and run; change nothing"
    )
    parser.add_argument(
        "--with-tray", action="store_true", help="install: also start the tray menu at login"
    )
    return parser


def main(
    args: argparse.Namespace,
    settings: Settings,
    *,
    runner: Runner = run_command,
    spec: ServiceSpec | None = None,
    platform: str = sys.platform,
) -> int:
    """Run `device-agent service ACTION`; exit 0, or 2 with one line saying what to do."""
    try:
        manager = manager_for(spec or ServiceSpec.from_settings(settings), runner, platform)
        if args.action == "status":
            print(f"device-agent service ({manager.name}): {manager.status()}")
            return 0
        steps = {
            "install": lambda: manager.install(with_tray=args.with_tray),
            "uninstall": manager.uninstall,
            "start": manager.start,
            "stop": manager.stop,
        }[args.action]()
        if args.dry_run:
            for step in steps:
                print(describe(step))
            return 0
        if args.action == "install":
            settings.paths.ensure()  # launchd does not create the folder its logs go to
        apply(steps, runner, hint=manager.hint)
    except ServiceError as exc:
        print(f"device-agent: {exc}", file=sys.stderr)
        return 2
    print(_done(args.action, manager, steps))
    return 0


def _done(action: str, manager: ServiceManager, steps: Sequence[Step]) -> str:
    if action == "install" and not steps:
        return "device-agent service: already installed and running; nothing changed"
    if action == "install":
        return "\n".join(["device-agent service: installed and started", *manager.notes()])
    return {
        "uninstall": "device-agent service: removed",
        "start": "device-agent service: started",
        "stop": "device-agent service: stopped",
    }[action]
