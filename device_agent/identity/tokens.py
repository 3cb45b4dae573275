"""What the agent needs from credentials, without depending on where tokens are kept."""

from __future__ import annotations


class TokenSource:
    """The token now, and a way to get a fresh one."""

    def current(self) -> str:
        raise NotImplementedError

    async def refresh(self) -> bool:
        """Try to obtain a new token after a 401. True if there is one to try."""
        return False
