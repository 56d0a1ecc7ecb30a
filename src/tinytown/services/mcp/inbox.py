"""Reading an agent's notes through MCP: informational messages, acknowledged on read.

The runtime hands an agent its work (tasks, questions) in rounds and batches the
messages that need no action into the next prompt's notes. An agent in a round may read
those notes itself (the MCP tool ``read_inbox``): they are then taken out of its inbox,
so the next prompt does not repeat them. Work and control messages are never taken here.
"""

from __future__ import annotations

from tinytown.errors import MalformedRecordError
from tinytown.model import Message, MessageType, loads
from tinytown.store.records import Op, Store

#: The kinds a model reads as notes (no action the runtime must see through).
NOTE_TYPES = frozenset(
    {
        MessageType.INFORMATIONAL,
        MessageType.CONFIRMATION,
        MessageType.TASK_DONE,
        MessageType.TASK_FAILED,
    }
)


async def take_notes(store: Store, agent_id: str, limit: int) -> list[Message]:
    """Up to ``limit`` notes waiting in the agent's inbox, oldest first, removed from it.

    Two round trips: one read, one atomic removal of exactly the entries read (``LREM``
    of each raw value, so a message the runtime moved into flight meanwhile is left to
    the runtime; it may then be seen twice, never lost). Raises ReplyLostError when the
    removal's reply was lost (the notes may or may not have been removed: read again).
    Cancellable: before the removal nothing changed; after it the notes are gone.
    """
    [raws] = await store.read_lists([store.keys.inbox(agent_id)])
    picked: list[tuple[str, Message]] = []
    for raw in raws:
        if len(picked) >= limit:
            break
        try:
            message = loads(Message, raw)
        except MalformedRecordError:
            continue  # the runtime reports it; not ours to drop
        if message.type in NOTE_TYPES:
            picked.append((raw, message))
    if not picked:
        return []
    ops: list[Op] = [["LREM", store.keys.inbox(agent_id), "1", raw] for raw, _ in picked]
    await store.run_ops(ops)
    return [message for _, message in picked]
