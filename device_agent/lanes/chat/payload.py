"""Typed views of a claimed chat turn (docs/protocol.md, "Chat lane").

`parse_chat_turn` turns the poll answer's `payload` into frozen dataclasses.
Nothing but `PayloadError` escapes it, and its message names the field: a bad
payload fails that turn (reported to `complete-chat`), never the loop.

The sizes are the upstream contract's (`DeviceChatPollPayloadSchema`): a
message of at most 32,000 characters, at most 12 history entries of at most
16,000 each, a workspace context of at most 2,048, an `agent_kind` of 1 to 64.
The agent's layers have no upstream bound; this agent takes up to
`MAX_LAYER_CHARS` each. A turn over any bound is refused whole, not cut: a
reply to half a message would answer something the person never said.

Free text (the message, the history, the layers) is only ever shown to the
CLI, so NUL and lone surrogates in it are replaced (`textsafe.storable`) and
the turn goes on; in an identifier (`agent_kind`, the agent's id) they fail
the turn, as in the automation lane. `payload.context` is read exactly as the
automation lane reads it (`automation.payload.read_context`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from device_agent.lanes.automation.payload import (
    MAX_RUN_ID,
    AutomationContext,
    read_context,
)
from device_agent.server.protocol import Claim, PayloadError, preview, read_mapping
from device_agent.textsafe import has_unstorable, storable

MAX_MESSAGE_CHARS: Final = 32_000
MAX_HISTORY_ENTRIES: Final = 12
MAX_HISTORY_ENTRY_CHARS: Final = 16_000
MAX_EPHEMERAL_CONTEXT_CHARS: Final = 2_048
MAX_AGENT_KIND_CHARS: Final = 64
MAX_LAYER_CHARS: Final = 64_000  # ours: upstream leaves identity/soul/user layers unbounded
MAX_NAME_CHARS: Final = 1_000  # ours, for the agent's name and id
ROLES: Final = ("user", "assistant")

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class ChatEntry:
    """One earlier message of the conversation, oldest first."""

    role: Role
    content: str


@dataclass(frozen=True)
class ChatAgent:
    """The Lobu agent the conversation talks to, and its layers (Markdown)."""

    id: str
    name: str | None = None
    identity_md: str | None = None
    soul_md: str | None = None
    user_md: str | None = None


@dataclass(frozen=True)
class ChatTurn:
    run_id: int
    organization_id: str | None
    agent_kind: str
    message: str
    history: tuple[ChatEntry, ...]
    agent: ChatAgent
    context: AutomationContext
    ephemeral_context: str | None = None
    execution_config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def conversation_id(self) -> str | None:
        """The conversation's id, when the server sent a session (it names it there)."""
        session = self.context.agent_session
        return session.conversation_id if session else None

    @property
    def secrets(self) -> tuple[str, ...]:
        """What redaction must hide for this turn, besides the device token."""
        session = self.context.agent_session
        return (session.token,) if session else ()


def parse_chat_turn(claim: Claim) -> ChatTurn:
    """Validate a claimed chat turn. Raises `PayloadError` naming the bad field."""
    if not 1 <= claim.run_id <= MAX_RUN_ID:
        raise PayloadError(f"run_id {claim.run_id} is outside 1..{MAX_RUN_ID}")
    payload = read_mapping(claim.payload, "payload")
    where = "payload.chat"
    chat = read_mapping(payload.get("chat"), where)
    config = chat.get("execution_config")
    return ChatTurn(
        run_id=claim.run_id,
        organization_id=claim.organization_id,
        agent_kind=_agent_kind(chat.get("agent_kind"), f"{where}.agent_kind"),
        message=_text(chat.get("message"), f"{where}.message", MAX_MESSAGE_CHARS, "a message"),
        history=_history(chat.get("history"), f"{where}.history"),
        agent=_agent(chat.get("agent"), f"{where}.agent"),
        context=read_context(payload.get("context")),
        ephemeral_context=_optional_text(
            chat.get("ephemeral_context"),
            f"{where}.ephemeral_context",
            MAX_EPHEMERAL_CONTEXT_CHARS,
            "the workspace context",
        ),
        execution_config=(
            {} if config is None else dict(read_mapping(config, f"{where}.execution_config"))
        ),
    )


def _agent_kind(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{where} is missing or not a non-empty string: {preview(value)}")
    if len(value) > MAX_AGENT_KIND_CHARS:
        raise PayloadError(
            f"{where} is {len(value):,} characters long; at most {MAX_AGENT_KIND_CHARS} are allowed"
        )
    if has_unstorable(value):
        raise PayloadError(f"{where} contains NUL or a lone surrogate: {preview(value)}")
    return value


def _history(value: object, where: str) -> tuple[ChatEntry, ...]:
    if value is None:
        return ()  # a conversation's first turn may come without one
    if not isinstance(value, list):
        raise PayloadError(f"{where} must be a list of messages, got {preview(value)}")
    if len(value) > MAX_HISTORY_ENTRIES:
        raise PayloadError(
            f"{where} has {len(value):,} entries; a turn carries at most {MAX_HISTORY_ENTRIES}"
        )
    return tuple(_entry(item, f"{where}[{index}]") for index, item in enumerate(value))


def _entry(value: object, where: str) -> ChatEntry:
    raw = read_mapping(value, where)
    role = raw.get("role")
    if role not in ROLES:
        raise PayloadError(f"{where}.role must be 'user' or 'assistant', got {preview(role)}")
    content = _text(raw.get("content"), f"{where}.content", MAX_HISTORY_ENTRY_CHARS, "an entry")
    return ChatEntry(role="user" if role == "user" else "assistant", content=content)


def _agent(value: object, where: str) -> ChatAgent:
    raw = read_mapping(value, where)
    ident = raw.get("id")
    if isinstance(ident, int) and not isinstance(ident, bool):
        ident = str(ident)
    if not isinstance(ident, str) or not ident.strip():
        raise PayloadError(f"{where}.id is missing or not a string or number: {preview(ident)}")
    if len(ident) > MAX_NAME_CHARS or has_unstorable(ident):
        raise PayloadError(f"{where}.id is not a usable id: {preview(ident)}")
    return ChatAgent(
        id=ident,
        name=_optional_text(raw.get("name"), f"{where}.name", MAX_NAME_CHARS, "a name"),
        identity_md=_layer(raw, "identity_md", where),
        soul_md=_layer(raw, "soul_md", where),
        user_md=_layer(raw, "user_md", where),
    )


def _layer(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    return _optional_text(raw.get(key), f"{where}.{key}", MAX_LAYER_CHARS, "an agent layer")


def _text(value: object, where: str, limit: int, what: str) -> str:
    if not isinstance(value, str):
        raise PayloadError(f"{where} is missing or not a string (got {preview(value)})")
    if len(value) > limit:
        # Never previewed: it is the person's own text, and may be megabytes.
        raise PayloadError(
            f"{where} is {len(value):,} characters long; {what} may be at most {limit:,}"
        )
    return storable(value)


def _optional_text(value: object, where: str, limit: int, what: str) -> str | None:
    return None if value is None else _text(value, where, limit, what)
