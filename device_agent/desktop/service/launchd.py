"""macOS: a LaunchAgent in ~/Library/LaunchAgents, loaded with `launchctl bootstrap gui/<uid>`."""

from __future__ import annotations

import plistlib
import re
import subprocess
from collections import deque
from collections.abc import Callable
from pathlib import Path

from device_agent.desktop.control_client import ControlError, request, socket_path
from device_agent.desktop.service.ready import Readiness
from device_agent.desktop.service.spec import LABEL, TRAY_LABEL, ServiceError, ServiceSpec
from device_agent.desktop.service.steps import (
    Command,
    RemoveFile,
    Runner,
    Step,
    WriteFile,
    call,
    run_command,
    unchanged,
)
from device_agent.desktop.service.templates import fill_plist


class Launchd:
    name = "launchd"
    hint = (
        "`service` on macOS needs launchctl (/bin/launchctl) and a logged-in GUI session; "
        "run `device-agent run` in a terminal meanwhile"
    )

    def __init__(
        self,
        spec: ServiceSpec,
        runner: Runner = run_command,
        *,
        daemon_answers: Callable[[], bool] | None = None,
    ) -> None:
        self.spec = spec
        self.runner = runner
        # launchd has no readiness protocol: the agent is ready once it answers on its
        # control socket (tests replace this).
        self.daemon_answers = daemon_answers or (lambda: _answers(spec.state_dir))
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

    def readiness(self) -> Readiness:
        result = self._print(LABEL)
        if result.returncode != 0:
            return Readiness(False, "not loaded")
        fields = dict(re.findall(r"^\s*(state|pid|last exit code) = (.+)$", result.stdout, re.M))
        state = fields.get("state", "unknown")
        detail = ", ".join(f"{key} {value}" for key, value in fields.items()) or "no details"
        if state == "running":
            if self.daemon_answers():
                return Readiness(True, detail)
            return Readiness(None, detail)
        if "last exit code" in fields:  # it ran and ended: launchd restarts it, if at all,
            return Readiness(False, detail)  # after ThrottleInterval
        return Readiness(None, detail)

    def recent_logs(self, lines: int) -> list[str]:
        """The last lines the agent wrote to its stderr file (the plist's StandardErrorPath)."""
        path = self.spec.log_dir / "service.err.log"
        try:
            with path.open(encoding="utf-8", errors="replace") as file:
                return [line.rstrip("\n") for line in deque(file, maxlen=lines)]
        except FileNotFoundError:
            return [f"(nothing written to {path} yet)"]
        except OSError as exc:
            return [f"(cannot read {path}: {exc.strerror})"]

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


def _answers(state_dir: Path) -> bool:
    """Does a device-agent answer on the control socket of `state_dir`?"""
    try:
        request(socket_path(state_dir), "status", timeout=2.0)
    except ControlError:
        return False
    return True
