"""Text the server can store (docs/protocol.md, "Text the server can store").

The server keeps run text in Postgres `text`/`jsonb` columns, which refuse
U+0000 for good (every retry gets the same 500), and a lone surrogate cannot
even be encoded as UTF-8 for the request. CLIs print both. So every text field
goes through `storable` before its first post; the raw bytes stay in the journal.
"""

from __future__ import annotations

import re
from typing import Final

REPLACEMENT: Final = "\ufffd"

# NUL, and any UTF-16 surrogate code point: in a Python str they are always
# unpaired (a decoded pair becomes one astral character).
_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` with U+0000 and lone surrogates replaced by U+FFFD; anything else kept as is."""
    return _UNSTORABLE.sub(REPLACEMENT, text)


def has_unstorable(text: str) -> bool:
    """Whether `storable` would change `text`."""
    return _UNSTORABLE.search(text) is not None


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def encodable(text: str) -> str:
    """`text` with lone surrogates replaced by U+FFFD, NUL kept: what UTF-8 (and so the
    journal) can hold, as close to the raw text as that allows."""
    return _SURROGATE.sub(REPLACEMENT, text)
