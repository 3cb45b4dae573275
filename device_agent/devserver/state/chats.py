"""Device chats (current servers): conversations pinned to a device, and their turns.

Each message a person posts becomes a pending `chat_message` run pinned to
the conversation's device; a completed turn adds the exchange (the message,
then the reply) to the conversation's history, which the next turn carries
(docs/protocol.md, "Chat lane").
"""

from __future__ import annotations

import copy
from typing import Any, Final

from device_agent.devserver.state.devices import Devices
from device_agent.devserver.state.records import ConversationRecord, RunRecord

HISTORY_ENTRIES: Final = 12  # what a turn carries of the conversation, newest last
HISTORY_ENTRY_CHARS: Final = 16_000


class Chats(Devices):
    """Conversations whose execution target is a device, and their turns."""

    def add_conversation(
        self,
        pinned_worker_id: str,
        agent_kind: str = "claude-code",
        *,
        agent_id: str = "default",
        agent_name: str | None = "Assistant",
        identity_md: str | None = None,
        soul_md: str | None = None,
        user_md: str | None = None,
        execution_config: dict[str, Any] | None = None,
    ) -> str:
        """Create a conversation pinned to the device `pinned_worker_id`; returns its id.

        Only a current server (`lane="automation"`) has device chats; the device
        must advertise `agent_kind` to be handed its turns.
        """
        if self.lane != "automation":
            raise ValueError("device chats exist only on a current server (lane='automation')")
        if not agent_kind:
            raise ValueError("a device chat needs an agent_kind")
        with self.lock:
            conversation = ConversationRecord(
                id=f"conv_{self._next_conversation_id}",
                device_id=self.ensure_device(pinned_worker_id).id,
                agent_kind=agent_kind,
                agent_id=agent_id,
                agent_name=agent_name,
                identity_md=identity_md,
                soul_md=soul_md,
                user_md=user_md,
                execution_config=execution_config,
                created_at=self.clock(),
            )
            self._next_conversation_id += 1
            self._conversations[conversation.id] = conversation
            return conversation.id

    def post_message(
        self, conversation_id: str, message: str, *, ephemeral_context: str | None = None
    ) -> int:
        """A person writes in the conversation: queue its turn; returns the run id."""
        if not isinstance(message, str):
            raise TypeError("message must be a string")
        with self.lock:
            conversation = self._conversation(conversation_id)
            run = self._new_run(
                run_type="chat_message",
                watcher_id=None,
                device_id=conversation.device_id,
                approved_input={
                    "device_worker_id": conversation.device_id,
                    "message": message,
                    "ephemeral_context": ephemeral_context,
                },
            )
            run.conversation_id = conversation.id
            return run.id

    def conversation(self, conversation_id: str) -> ConversationRecord:
        with self.lock:
            return copy.deepcopy(self._conversation(conversation_id))

    def conversations(self) -> list[ConversationRecord]:
        with self.lock:
            return [copy.deepcopy(c) for c in self._conversations.values()]

    def turns(self, conversation_id: str) -> list[RunRecord]:
        """The conversation's turns, oldest first."""
        with self.lock:
            self._conversation(conversation_id)
            return [
                copy.deepcopy(run)
                for run in self._runs.values()
                if run.conversation_id == conversation_id
            ]

    # ------------------------------------------- used by the route handlers

    def find_conversation(self, conversation_id: str | None) -> ConversationRecord | None:
        return self._conversations.get(conversation_id or "")

    def next_turn_of(self, conversation_id: str) -> RunRecord | None:
        """The one turn of the conversation a device may be handed now: the oldest pending,
        and only while none is running (one turn per conversation at a time)."""
        turns = [r for r in self._runs.values() if r.conversation_id == conversation_id]
        if any(run.status == "running" for run in turns):
            return None
        pending = [run for run in turns if run.status == "pending"]
        return min(pending, key=lambda run: run.id) if pending else None

    def history_for(self, conversation: ConversationRecord) -> list[dict[str, str]]:
        """What a turn carries of the conversation: its last entries, each bounded."""
        return [
            {"role": entry["role"], "content": entry["content"][:HISTORY_ENTRY_CHARS]}
            for entry in conversation.history[-HISTORY_ENTRIES:]
        ]

    def _conversation(self, conversation_id: str) -> ConversationRecord:
        conversation = self._conversations.get(conversation_id)
        if conversation is None:
            raise KeyError(f"conversation {conversation_id!r}")
        return conversation
