"""Waiting for an agent to stop (or to be idle with nothing queued), without polling."""

from __future__ import annotations

import trio

from tinytown.errors import (
    InvalidInputError,
    MalformedRecordError,
    NotFoundError,
    TimeoutExpiredError,
)
from tinytown.model import Agent, AgentState, Message, loads
from tinytown.store import indexes
from tinytown.store.records import Store

#: XREAD BLOCK 0 would hold the connection forever; a long block is the same.
BLOCK_MS = 60_000


async def wait_for_agent(
    store: Store, agent: Agent, *, timeout: float | None = None, idle: bool = False
) -> Agent:
    """Block until ``agent`` reaches a terminal state (or, with ``idle``, is idle with an
    empty inbox and nothing actionable in flight). Wakes on the event stream.

    Raises InvalidInputError for a negative ``timeout``, TimeoutExpiredError after
    ``timeout`` seconds, NotFoundError if the agent disappears. Cancellable: nothing is
    changed by waiting.
    """
    if timeout is not None and not timeout >= 0:  # also refuses NaN
        raise InvalidInputError(f"A timeout must be 0 seconds or more, not {timeout:g}.")
    with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
        async with store.events.waiter() as wait:
            last = await store.events.last_id()
            while True:
                current = await store.get(Agent, store.keys.agent(agent.id))
                if current is None:
                    raise NotFoundError(f"Agent {agent.name} no longer exists.")
                agent = current
                if await _reached(store, agent, idle):
                    return agent
                last = await wait(last, BLOCK_MS)
    assert scope.cancelled_caught
    raise TimeoutExpiredError(
        f"Agent {agent.name} is still {agent.state.value} after {timeout:g} s."
    )


async def _reached(store: Store, agent: Agent, idle: bool) -> bool:
    if agent.state.terminal:
        return True
    if not idle or agent.state is not AgentState.IDLE:
        return False
    queued, inflight = await indexes.queued_and_inflight(store, agent.id)
    # Notes (informational, replies) wait in flight for the next round: they do not
    # make an idle agent busy. Anything actionable there means a round is starting.
    return queued == 0 and not any(_actionable(raw) for raw in inflight)


def _actionable(raw: str) -> bool:
    try:
        return loads(Message, raw).actionable
    except MalformedRecordError:
        return False
