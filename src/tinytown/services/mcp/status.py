"""What the MCP tool ``town_status`` shows, read in two round trips whatever the town's
size: every agent and task record in one, the runtime's lease in the other."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import attrs

from tinytown.errors import MalformedRecordError
from tinytown.model import Agent, Task, loads
from tinytown.services import control
from tinytown.store import lookups
from tinytown.store.records import Store

T = TypeVar("T")


@attrs.frozen
class Snapshot:
    agents: list[Agent]  # oldest first
    tasks: list[Task]  # in creation order
    runtime: control.LeaseHolder | None  # None: the town is not running


def parsed(store: Store, cls: type[T], raws: Sequence[str]) -> list[T]:
    """The records of ``raws`` that parse; the others are noted in store.warnings."""
    out: list[T] = []
    for raw in raws:
        try:
            out.append(loads(cls, raw))
        except MalformedRecordError as exc:
            store.warnings.append(str(exc))
    return out


async def snapshot(store: Store) -> Snapshot:
    """Every agent, every task and who runs the town. Cancellable (nothing changes)."""
    agent_raws, task_raws = await lookups.record_sets(store, agents=True, tasks=True)
    agents = sorted(parsed(store, Agent, agent_raws), key=lambda a: a.created_at)
    return Snapshot(agents, parsed(store, Task, task_raws), await control.runtime_holder(store))
