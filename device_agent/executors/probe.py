"""What `device-agent doctor` learns about each executor profile: its CLI, and its version."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from device_agent.config import ExecutorSettings
from device_agent.executors.environment import child_environment
from device_agent.executors.process import run_in_group
from device_agent.executors.profiles import Profile
from device_agent.executors.readers import tail

DOCTOR_TIMEOUT_SECONDS: Final = 5.0
_VERSION: Final = re.compile(r"\d+(?:\.\d+)+")


@dataclass(frozen=True)
class ProfileCheck:
    """What `device-agent doctor` shows for one profile."""

    name: str
    binary: str
    path: str | None  # where the binary was found on the child's PATH, None if nowhere
    version: str | None  # first line the binary printed for `--version`
    error: str | None
    probed: bool = True  # False: found, but its profile declares no version_args
    checked_version: str | None = None  # the version its profile was checked against

    @property
    def version_number(self) -> str | None:
        """The dotted version number in what the CLI printed ("2.1.337 (Claude Code)",
        "codex-cli 0.171.0"), or None."""
        found = _VERSION.search(self.version or "")
        return found.group(0) if found else None

    @property
    def drift(self) -> str | None:
        """ "newer" or "older" when the CLI found is not the version its profile was checked
        against (its flags or output may have changed); None when the same, or unknown."""
        found, checked = self.version_number, self.checked_version
        if found is None or checked is None or _numbers(found) == _numbers(checked):
            return None
        return "newer" if _numbers(found) > _numbers(checked) else "older"


_Probe = Callable[..., Awaitable[tuple[str | None, str | None]]]


async def check_profiles(
    profiles: Mapping[str, Profile],
    *,
    settings: ExecutorSettings | None = None,
    environ: Mapping[str, str] | None = None,
    time_limit: float = DOCTOR_TIMEOUT_SECONDS,
) -> list[ProfileCheck]:
    """Find each profile's binary on the executor's PATH and ask it for its version."""
    env = child_environment(environ, settings or ExecutorSettings(), secrets=())
    checks = [_check(profiles[name], env, time_limit, probe_version) for name in sorted(profiles)]
    return list(await asyncio.gather(*checks))


async def _check(
    profile: Profile, env: Mapping[str, str], time_limit: float, probe: _Probe
) -> ProfileCheck:
    shown = profile.program or "(none)"
    if not profile.configured:
        return ProfileCheck(
            profile.name,
            shown,
            None,
            None,
            f"not configured: set argv in {profile.name}.toml in your config dir",
        )
    path = profile.resolve(env["PATH"])
    if path is None:
        return ProfileCheck(
            profile.name, shown, None, None, f"{profile.program} binary not found on PATH"
        )
    if not profile.version_args:
        return ProfileCheck(profile.name, shown, path, None, None, probed=False)
    argv: Sequence[str] = [path, *profile.version_args]
    version, error = await probe(argv, env=env, time_limit=time_limit)
    return ProfileCheck(
        profile.name, shown, path, version, error, checked_version=profile.checked_version
    )


def _numbers(version: str) -> tuple[int, ...]:
    """The parts of a dotted version, trailing zeros dropped: 0.61 is 0.61.0."""
    parts = [int(part) for part in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


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
