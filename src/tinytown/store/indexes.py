"""Named reads of a town's indexes and lists: the agent and task indexes, the backlog,
inboxes and in-flight lists, the event stream. Services call these instead of raw
Redis commands (store/records.py changes records; this module only reads, except
:func:`return_inflight`, :func:`set_meta`, :func:`beat` and a batch spawn's set of picked
nicknames).

Cancellation: every function is cancellable at any await; a cancelled read changes
nothing, and each write is one atomic command or script (done entirely or not at all)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from tinytown.store.client import Script
from tinytown.store.records import Store
from tinytown.store.scripts import RETURN_INFLIGHT


def _pairs(flat: list[str] | dict[str, str]) -> dict[str, str]:
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True))


# -- agents --------------------------------------------------------------------------


async def agent_index(store: Store) -> dict[str, str]:
    """Agent name -> id for every agent."""
    return _pairs(await store.redis.execute("HGETALL", store.keys.agents))


async def agent_id_for_name(store: Store, name: str) -> str | None:
    return await store.redis.execute("HGET", store.keys.agents, name)


async def agent_exists(store: Store, agent_id: str) -> bool:
    return bool(await store.redis.execute("EXISTS", store.keys.agent(agent_id)))


async def nickname_index(store: Store) -> dict[str, str]:
    """Lower-case nickname -> agent id (entries of deleted agents may linger)."""
    return _pairs(await store.redis.execute("HGETALL", store.keys.nicknames))


#: A free nickname, looked for on the server: the candidates given (the agent's own name
#: first, then the following names of the list), then the first one numbered (``Ruth2``,
#: ``Ruth3``, ... from a per-name counter, so a big town costs no scan). An entry whose
#: agent record is gone counts as free. Returns {nickname, holder to replace or ""}; it
#: reserves nothing (the spawn's APPLY guards the entry), only the counter moves.
PICK_NICKNAME = Script(
    """
local function free(nick)
  local holder = redis.call('HGET', KEYS[1], string.lower(nick))
  if not holder then return true, '' end
  if redis.call('EXISTS', ARGV[1] .. holder) == 0 then return true, holder end
  return false, holder
end
for i = 2, #ARGV do
  local ok, stale = free(ARGV[i])
  if ok then return {ARGV[i], stale} end
end
while true do
  local n = redis.call('HINCRBY', KEYS[2], string.lower(ARGV[2]), 1) + 1
  local ok, stale = free(ARGV[2] .. n)
  if ok then return {ARGV[2] .. n, stale} end
end
"""
)


async def pick_nickname(store: Store, candidates: Sequence[str]) -> tuple[str, str | None]:
    """(a free nickname, the stale holder its index entry still names, if any), in one
    round trip whatever the town's size. Cancellable."""
    nick, stale = await store.redis.run_script(
        PICK_NICKNAME,
        [store.keys.nicknames, f"{store.keys.nicknames}:next"],
        [store.keys.agent(""), *candidates],
    )
    return str(nick), (str(stale) or None)


#: :data:`PICK_NICKNAME` for many agents in one call. KEYS[3] is a set of the nicknames
#: picked for the same batch by earlier calls (not in the index before the batch's write):
#: they count as taken, and each pick joins it. ARGV: the agent key prefix, the set's
#: lifetime in seconds, then per agent the number of its candidates and the candidates.
#: Returns {nickname, stale holder or ""} per agent.
PICK_NICKNAMES = Script(
    """
local function free(nick)
  local low = string.lower(nick)
  if redis.call('SISMEMBER', KEYS[3], low) == 1 then return false, '' end
  local holder = redis.call('HGET', KEYS[1], low)
  if not holder then return true, '' end
  if redis.call('EXISTS', ARGV[1] .. holder) == 0 then return true, holder end
  return false, holder
end
local out = {}
local i = 3
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local first, nick, stale = ARGV[i + 1], nil, ''
  for j = i + 1, i + n do
    local ok, s = free(ARGV[j])
    if ok then nick, stale = ARGV[j], s; break end
  end
  while not nick do
    local k = redis.call('HINCRBY', KEYS[2], string.lower(first), 1) + 1
    local ok, s = free(first .. k)
    if ok then nick, stale = first .. k, s end
  end
  redis.call('SADD', KEYS[3], string.lower(nick))
  out[#out + 1] = nick
  out[#out + 1] = stale
  i = i + n + 1
end
redis.call('EXPIRE', KEYS[3], ARGV[2])
return out
"""
)
#: How long a batch's set of picked nicknames lives if the batch never removes it.
PICKED_TTL = 600


async def pick_nicknames(
    store: Store, batch: str, candidates: Sequence[Sequence[str]]
) -> list[tuple[str, str | None]]:
    """:func:`pick_nickname` for each candidate list (none empty), in ONE round trip;
    the nicknames differ from each other and from those picked before under the same
    ``batch`` key (see :func:`forget_picked`). Cancellable."""
    args: list[str] = [store.keys.agent(""), str(PICKED_TTL)]
    for names in candidates:
        args += [str(len(names)), *names]
    keys = [store.keys.nicknames, f"{store.keys.nicknames}:next", batch]
    flat = await store.redis.run_script(PICK_NICKNAMES, keys, args)
    return [(str(flat[i]), str(flat[i + 1]) or None) for i in range(0, len(flat), 2)]


def picked_key(store: Store, batch_id: str) -> str:
    """The set of nicknames picked for one batch spawn (until its write)."""
    return f"{store.keys.nicknames}:picked:{batch_id}"


async def forget_picked(store: Store, batch: str) -> None:
    """Drop a batch's set of picked nicknames (it also expires by itself)."""
    await store.redis.execute("DEL", batch)


async def nickname_holder(store: Store, nickname: str) -> tuple[str | None, bool]:
    """(the agent id the index gives ``nickname`` to, whether that agent still exists)."""
    holder = await store.redis.execute("HGET", store.keys.nicknames, nickname.lower())
    if holder is None:
        return None, False
    return holder, bool(await store.redis.execute("EXISTS", store.keys.agent(holder)))


async def index_sizes(store: Store) -> tuple[int, int]:
    """(agents in the name index, entries in the nickname index), in one round trip."""
    agents, nicknames = await store.redis.pipeline(
        [["HLEN", store.keys.agents], ["HLEN", store.keys.nicknames]]
    )
    return int(agents), int(nicknames)


def heartbeats_key(store: Store) -> str:
    """The hash of live agents' heartbeats: agent id -> ``now()`` stamp of the last beat."""
    return f"{store.keys.prefix}heartbeats"


async def beat(store: Store, agent_ids: Sequence[str], stamp: str) -> None:
    """Make the heartbeat hash hold exactly ``agent_ids``, each beating at ``stamp``: one
    round trip (MULTI: DEL, HSET), whatever the town's size, and no record rewritten.
    Not retried after a lost reply (the next beat writes it again)."""
    key = heartbeats_key(store)
    commands: list[list[Any]] = [["MULTI"], ["DEL", key]]
    if agent_ids:
        commands.append(["HSET", key, *[x for i in agent_ids for x in (i, stamp)]])
    await store.redis.pipeline([*commands, ["EXEC"]])


async def heartbeats(store: Store, agent_ids: Sequence[str]) -> dict[str, str]:
    """Agent id -> its last beat, for those of ``agent_ids`` a running town beats for
    (one HMGET). The agent record's ``last_heartbeat`` is refreshed far less often
    (runtime/supervisor.py): readers take the fresher of the two."""
    if not agent_ids:
        return {}
    stamps = await store.redis.execute("HMGET", heartbeats_key(store), *agent_ids)
    return {i: s for i, s in zip(agent_ids, stamps, strict=True) if s}


async def answered_questions(store: Store, message_ids: Sequence[str]) -> set[str]:
    """Which of ``message_ids`` were replied to (``tt reply``), in one round trip."""
    if not message_ids:
        return set()
    scores = await store.redis.execute("ZMSCORE", store.keys.answered, *message_ids)
    return {m for m, s in zip(message_ids, scores, strict=True) if s is not None}


async def queue_counts(store: Store, agent_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
    """Agent id -> (queued, in flight) message counts, in one round trip."""
    ids = list(agent_ids)
    commands: list[list[Any]] = []
    for agent_id in ids:
        commands.append(["LLEN", store.keys.inbox(agent_id)])
        commands.append(["LLEN", store.keys.inflight(agent_id)])
    replies = await store.redis.pipeline(commands) if commands else []
    return {a: (int(replies[2 * i]), int(replies[2 * i + 1])) for i, a in enumerate(ids)}


async def queued_and_inflight(store: Store, agent_id: str) -> tuple[int, list[str]]:
    """The inbox length and the raw in-flight messages of one agent, in one round trip."""
    queued, inflight = await store.redis.pipeline(
        [["LLEN", store.keys.inbox(agent_id)], ["LRANGE", store.keys.inflight(agent_id), 0, -1]]
    )
    return int(queued), list(inflight)


async def start_snapshot(
    store: Store, agent_ids: Sequence[str]
) -> tuple[list[str | None], list[list[str]], list[int]]:
    """For starting actors, in one round trip: each agent's raw record (None where
    absent), its in-flight messages and its inbox length."""
    keys = store.keys
    commands: list[list[Any]] = [["MGET", *[keys.agent(i) for i in agent_ids]]]
    for agent_id in agent_ids:
        commands.append(["LRANGE", keys.inflight(agent_id), 0, -1])
        commands.append(["LLEN", keys.inbox(agent_id)])
    replies = await store.redis.pipeline(commands)
    records, rest = list(replies[0]), replies[1:]
    return records, [list(r) for r in rest[::2]], [int(n) for n in rest[1::2]]


async def raw_list(store: Store, key: str) -> list[str]:
    """Every element of one list (an inbox or in-flight list), head first."""
    return list(await store.redis.execute("LRANGE", key, 0, -1))


async def return_inflight(store: Store, agent_id: str) -> int:
    """Put the agent's in-flight messages back at the head of its inbox, in order (atomic)."""
    keys = [store.keys.inflight(agent_id), store.keys.inbox(agent_id)]
    return int(await store.redis.run_script(RETURN_INFLIGHT, keys, []))


@attrs.frozen
class WorkSnapshot:
    """One task, its assignee's record and the assignee's queued and in-flight messages,
    read in one atomic step (MULTI/EXEC): consistent with each other."""

    task_raw: str | None
    agent_raw: str | None
    inbox: list[str]
    inflight: list[str]


async def work_snapshot(store: Store, task_id: str, agent_id: str) -> WorkSnapshot:
    keys = store.keys
    replies = await store.redis.pipeline(
        [
            ["MULTI"],
            ["GET", keys.task(task_id)],
            ["GET", keys.agent(agent_id)],
            ["LRANGE", keys.inbox(agent_id), 0, -1],
            ["LRANGE", keys.inflight(agent_id), 0, -1],
            ["EXEC"],
        ]
    )
    task_raw, agent_raw, inbox, inflight = replies[-1]
    return WorkSnapshot(task_raw, agent_raw, list(inbox), list(inflight))


# -- tasks and the backlog -----------------------------------------------------------


async def task_ids(store: Store) -> list[str]:
    """Every task id in creation order."""
    return list(await store.redis.execute("ZRANGE", store.keys.tasks, 0, -1))


async def backlog_ids(store: Store, start: int = 0, stop: int = -1) -> list[str]:
    """Backlog task ids from ``start`` to ``stop`` (inclusive, as LRANGE), queue order."""
    return list(await store.redis.execute("LRANGE", store.keys.backlog, start, stop))


async def backlog_length(store: Store) -> int:
    """How many tasks wait in the backlog (one LLEN, whatever its length)."""
    return int(await store.redis.execute("LLEN", store.keys.backlog))


async def raw_records(store: Store, keys: Sequence[str]) -> list[str | None]:
    """The raw JSON of several records in one round trip (None where absent)."""
    return list(await store.redis.execute("MGET", *keys)) if keys else []


async def set_meta(store: Store, name: str, created_at: str, layout: str) -> None:
    """Record the town's metadata (``created_at`` only the first time)."""
    await store.redis.pipeline(
        [
            ["HSETNX", store.keys.meta, "created_at", created_at],
            ["HSET", store.keys.meta, "name", name, "layout", layout],
        ]
    )


async def ping(store: Store) -> None:
    await store.redis.execute("PING")


async def town_counts(store: Store) -> tuple[int, int]:
    """(agents, tasks) in the town's indexes, in one round trip."""
    agents, tasks = await store.redis.pipeline(
        [["HLEN", store.keys.agents], ["ZCARD", store.keys.tasks]]
    )
    return int(agents), int(tasks)


# -- plan ids (tasks.toml) -----------------------------------------------------------


async def plan_task_ids(store: Store, plan_ids: Sequence[str]) -> list[str | None]:
    """The task id each plan id maps to (None where unmapped)."""
    if not plan_ids:
        return []
    return list(await store.redis.execute("HMGET", store.keys.plan_ids, *plan_ids))


async def plan_map(store: Store) -> dict[str, str]:
    """Every plan id -> task id."""
    return _pairs(await store.redis.execute("HGETALL", store.keys.plan_ids))
