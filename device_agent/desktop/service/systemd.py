"""Linux: a systemd *user* unit of `Type=notify`, plus an XDG autostart entry for the tray."""

from __future__ import annotations

import re

from device_agent.config import ENV_TOKEN
from device_agent.desktop.service.ready import Readiness
from device_agent.desktop.service.spec import UNIT, WATCHDOG_SECONDS, ServiceError, ServiceSpec
from device_agent.desktop.service.steps import (
    Command,
    RemoveFile,
    Runner,
    Step,
    WriteFile,
    call,
    failure,
    run_command,
    unchanged,
)
from device_agent.desktop.service.templates import (
    desktop_exec,
    render_text,
    systemd_path,
    systemd_quote,
)


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
            raise ServiceError(failure(argv, result, self.hint))
        props = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        state = f"{props.get('ActiveState', '?')} ({props.get('SubState', '?')})"
        details = [f"pid {props['MainPID']}"] if props.get("MainPID", "0") != "0" else []
        if props.get("ExecMainStatus", "0") != "0":
            details.append(f"last exit code {props['ExecMainStatus']}")
        if props.get("NRestarts", "0") != "0":
            details.append(f"restarted {props['NRestarts']} times")
        return f"installed, {state}" + (f", {', '.join(details)}" if details else "")

    def readiness(self) -> Readiness:
        """`Type=notify`: the unit is `active` only once the agent said READY=1; `activating
        (auto-restart)` means it exited and waits to be started again."""
        argv = self._systemctl("show", UNIT, "--property=ActiveState,SubState,ExecMainStatus").argv
        result = call(self.runner, argv, hint=self.hint)
        if result.returncode != 0:
            return Readiness(False, failure(argv, result, self.hint))
        props = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        active, sub = props.get("ActiveState", "?"), props.get("SubState", "?")
        detail = f"{active} ({sub})"
        if props.get("ExecMainStatus", "0") not in ("", "0"):
            detail += f", last exit code {props['ExecMainStatus']}"
        if active == "active":
            return Readiness(True, detail)
        if active == "activating" and sub != "auto-restart":
            return Readiness(None, detail)
        return Readiness(False, detail)

    def recent_logs(self, lines: int) -> list[str]:
        """What the service printed last (its journal), or how to see it."""
        argv = ("journalctl", "--user", "-u", UNIT, "-n", str(lines), "--no-pager", "-o", "cat")
        try:
            result = call(self.runner, argv, hint=self.hint)
        except ServiceError as exc:
            return [f"(cannot read the journal: {exc})"]
        if result.returncode != 0 or not result.stdout.strip():
            return ["(nothing in the journal: see `journalctl --user -u device-agent`)"]
        return result.stdout.rstrip("\n").splitlines()[-lines:]

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
