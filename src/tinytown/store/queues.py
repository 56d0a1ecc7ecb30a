"""Named Redis operations on the runtime's lists: inboxes, in-flight lists, the backlog,
the control queue and the supervisor's mail. The runtime reaches these lists only here.

Which commands may be retried after a lost reply: reads (``LRANGE``, ``LLEN``, ``MGET``,
``HGETALL``) are idempotent. ``take`` and ``claim_control`` move entries, so a lost reply
leaves them moved but unseen; their callers recover by reading the destination list
(:meth:`Queues.in_flight`, :meth:`Queues.control_claimed`), which always holds them.

Cancellation: every operation here is cancellable at any point (the client then drops
its connection). A cancelled read changed nothing; a cancelled move or write may or may
not have run on the server, and is recovered the same way as a lost reply.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tinytown.store.flat import run_flat
from tinytown.store.records import Op, Store
from tinytown.store.scripts import HEARTBEAT, TAKE

if TYPE_CHECKING:
    import trio

#: Move up to ARGV[1] requests from the control list (KEYS[1]) to the claimed list
#: (KEYS[2]), oldest first; return them. The same move as an agent's TAKE: a request is
#: never outside a list until answered.
CLAIM = TAKE

#: How long an answer to a control request waits for its requester.
REPLY_TTL = 60
#: Supervisor mail kept for front ends.
MAIL_KEEP = 1000


class Queues:
    """The runtime's list operations for one town."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis
        self.keys = store.keys

    # -- the connection ------------------------------------------------------------------

    def ride_out_outages(self) -> None:
        """From now on, wait for Redis through outages instead of failing (the runtime)."""
        self.redis.reconnect = True

    @property
    def reconnected(self) -> trio.Event:
        """Set (then replaced by a fresh one) each time the client reconnects after an
        outage: keep the object and check ``is_set()`` to learn that one happened since."""
        return self.redis.reconnected

    # -- inboxes and in-flight lists -------------------------------------------------

    async def take(self, agent_id: str, n: int) -> list[str]:
        """Atomically move up to ``n`` messages from the inbox into flight; return them.

        Not idempotent: if the reply is lost, the messages are in flight but unseen;
        recover them with :meth:`in_flight`."""
        return list(
            await self.redis.run_script(
                TAKE, [self.keys.inbox(agent_id), self.keys.inflight(agent_id)], [n]
            )
        )

    async def in_flight(self, agent_id: str) -> list[str]:
        """Everything in the agent's in-flight list, oldest first."""
        return list(await self.redis.execute("LRANGE", self.keys.inflight(agent_id), 0, -1))

    async def run(self, ops: Sequence[Op]) -> None:
        """Run list/stream ops (acknowledgements, deliveries, mail: no record writes)
        atomically in one flat script call (store/flat.py). Not idempotent: a lost reply
        raises ReplyLostError. Cancellable; once sent, it may or may not have run."""
        await run_flat(self.store, ops)

    def ack_ops(self, agent_id: str, raws: Sequence[str]) -> list[Op]:
        """Ops removing handled messages from flight (run them with the effect they record)."""
        return [["LREM", self.keys.inflight(agent_id), "1", raw] for raw in raws]

    def return_ops(self, agent_id: str, raws: Sequence[str]) -> list[Op]:
        """Ops putting held messages back at the head of the inbox, in their order."""
        ops = self.ack_ops(agent_id, raws)
        ops += [["LPUSH", self.keys.inbox(agent_id), raw] for raw in reversed(raws)]
        return ops

    # -- control requests ---------------------------------------------------------------

    @property
    def claimed_key(self) -> str:
        """Control requests being handled: moved here from the control list, removed only
        together with their answer."""
        return f"{self.keys.control}:claimed"

    async def claim_control(self, n: int) -> list[str]:
        """Move up to ``n`` requests into the claimed list; return them. Not idempotent:
        after a lost reply, read :meth:`control_claimed`."""
        return list(await self.redis.run_script(CLAIM, [self.keys.control, self.claimed_key], [n]))

    async def control_claimed(self) -> list[str]:
        return list(await self.redis.execute("LRANGE", self.claimed_key, 0, -1))

    async def forget_control(self) -> None:
        """Drop requests left by a dead runtime: their requesters gave up long ago."""
        await self.store.run_ops([["DEL", self.keys.control], ["DEL", self.claimed_key]])

    def answer_ops(
        self, raw: str, request_id: str | None, reply: dict[str, Any] | None
    ) -> list[Op]:
        """Ops answering a claimed request (if it wants a reply) and un-claiming it.

        Idempotent: running them twice adds a second copy of the reply, which expires
        unread, and removes nothing more."""
        ops: list[Op] = [["LREM", self.claimed_key, "1", raw]]
        if request_id is not None and reply is not None:
            key = self.keys.reply(request_id)
            ops += [["RPUSH", key, json.dumps(reply)], ["EXPIRE", key, str(REPLY_TTL)]]
        return ops

    # -- supervisor mail ----------------------------------------------------------------

    def mail_ops(self, raw: str) -> list[Op]:
        """Ops keeping one message in the supervisor's mail list (capped)."""
        return [self.mail_push_op(raw), self.mail_trim_op()]

    def mail_push_op(self, raw: str) -> Op:
        """Add one message to the supervisor's mail; follow a batch of these with one
        :meth:`mail_trim_op`."""
        return ["RPUSH", self.keys.mail, raw]

    def mail_trim_op(self) -> Op:
        """Cap the supervisor's mail at MAIL_KEEP messages."""
        return ["LTRIM", self.keys.mail, str(-MAIL_KEEP), "-1"]

    # -- agents -----------------------------------------------------------------------

    async def agent_names(self, agent_ids: Sequence[str]) -> dict[str, str]:
        """Names of the given agents, in one round trip; absent or unreadable ones are left
        out."""
        if not agent_ids:
            return {}
        raws = await self.redis.execute("MGET", *[self.keys.agent(i) for i in agent_ids])
        out: dict[str, str] = {}
        for agent_id, raw in zip(agent_ids, raws, strict=True):
            try:
                name = json.loads(raw)["name"] if raw else None
            except (ValueError, TypeError, KeyError):
                name = None
            if isinstance(name, str):
                out[agent_id] = name
        return out

    async def heartbeat(self, agent_ids: Sequence[str], stamp: str) -> None:
        """Set ``last_heartbeat`` of the given agents, in one round trip."""
        if agent_ids:
            await self.redis.run_script(HEARTBEAT, [self.keys.agent(i) for i in agent_ids], [stamp])

    # -- wake-ups ---------------------------------------------------------------------

    async def listen(
        self, on_subscribed: Callable[[], None], on_message: Callable[[str], None]
    ) -> None:
        """Subscribe to the town's wake channel on a connection of its own and pass each
        published payload to ``on_message``; ``on_subscribed`` runs once the subscription is
        live. Returns only by raising RedisUnavailableError (connection lost). Cancellable."""
        async with self.redis.dedicated() as conn:
            await conn.send("SUBSCRIBE", self.keys.wake)
            await conn.read_reply()
            on_subscribed()
            while True:
                reply = await conn.read_reply()
                if reply and reply[0] == "message":
                    on_message(reply[2])
