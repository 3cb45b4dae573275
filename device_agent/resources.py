"""Locate the data shipped beside the code: executor profiles and config templates.

In a wheel they live in `device_agent/_data/`; in a source checkout they are
the top-level `executors/` and `config/` folders.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """`shipped_dir("executors")` or `shipped_dir("config")`."""
    installed = _PACKAGE / "_data" / name
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / name
