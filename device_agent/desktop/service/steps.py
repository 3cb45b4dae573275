"""A change to the service, as a plan of steps: printed by `--dry-run`, or applied.

The service manager is reached through one injectable `Runner` (argv lists,
no shell) that tests replace at the process boundary.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from device_agent.desktop.service.spec import ServiceError


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
                raise ServiceError(failure(step.argv, result, hint))


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


def failure(argv: Sequence[str], result: subprocess.CompletedProcess[str], hint: str) -> str:
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
