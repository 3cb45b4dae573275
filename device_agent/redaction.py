"""Secret values replaced by a marker: in run results and in log lines alike."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

REDACTED: Final = "[REDACTED]"
MIN_SECRET_LENGTH: Final = 6  # shorter values would redact ordinary words (buildkite uses 6 too)


def worth_hiding(secrets: Iterable[str | None]) -> list[str]:
    """The values long enough to hide, longest first (so a longer one is not cut by a shorter)."""
    kept = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
    return sorted(kept, key=len, reverse=True)


class SecretValues:
    """Replaces known secret values in text, or in every string of a nested value."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets = worth_hiding(secrets)

    def add(self, *secrets: str | None) -> None:
        self.secrets = worth_hiding([*self.secrets, *secrets])

    def text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def deep(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {key: self.deep(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.deep(item) for item in value]
        return value


# Each token shape, with a word it cannot match without (lower case): a line without the
# word skips the pattern's scan, and most lines have none of the words.
_PATTERNS: Final = (
    ("owl_pat_", re.compile(r"owl_pat_[A-Za-z0-9_-]{8,}")),
    ("bearer", re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")),
    (
        "token",
        re.compile(
            r"""(?i)(["']?(?:access_token|refresh_token|device_token|token)["']?\s*[:=]\s*["']?)"""
            r"""[^"',\s}]{8,}"""
        ),
    ),
)


class Redactor:
    """Replaces known secret values and, in log lines only, token-shaped strings."""

    def __init__(self) -> None:
        self._values = SecretValues()

    def add(self, *secrets: str | None) -> None:
        self._values.add(*secrets)

    def __call__(self, text: str) -> str:
        text = self._values.text(text)
        lowered = text.lower()
        for word, pattern in _PATTERNS:
            if word in lowered:
                text = pattern.sub(_keep_prefix, text)
        return text


def _keep_prefix(match: re.Match[str]) -> str:
    prefix = match.group(1) if match.groups() else ""
    return f"{prefix}{REDACTED}"


# The secrets this process knows (the token once read, a login's tokens): log lines
# (`device_agent.logs`), messages to the user and stored transcripts are cleaned of them.
# Here rather than in `logs` so that what reads a token need not load the logging stack.
redactor: Final = Redactor()
