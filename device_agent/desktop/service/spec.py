"""What the service runs and with which environment, gathered once from settings."""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from device_agent.config import Settings
from device_agent.executors.environment import extended_path
from device_agent.identity.store import usable_keyring

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
