"""Reads that gather, in one round trip, everything one service step needs before its
atomic write: a task found by id or id prefix together with the agent record the
change also touches, or whole sets of records (every agent, every task).

They only read (their scripts are idempotent and retried after a lost reply); the
decision and the write stay with the services, whose compare-and-set (``Store.apply``
with the raw values read here as expected values and guards) makes the whole step
atomic. Records Redis cannot GET (Rust Tinytown's hashes) are reported, not raised.

Cancellation: every function is cancellable at any await and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import attrs

from tinytown.store.client import Script
from tinytown.store.records import Store

#: Marks a record that exists but is not a string (a Rust Tinytown hash).
NOT_A_STRING = "\0HASH"

#: KEYS[1] the task index. ARGV[1] task key prefix, ARGV[2] agent key prefix, ARGV[3] the
#: task reference (lower case), ARGV[4] '1' when it is a full id (no scan), ARGV[5] the
#: agent to read too ('' none, '\0ASSIGNEE' the task's assignee, else an agent id).
#: Returns {ids matching the reference, task raw, agent id, agent raw}; the raws (and
#: the agent id) are false unless exactly one task matched. A non-string record reads
#: as '\0HASH'.
TASK_AND_AGENT = Script(
    """
local function read(key)
  local raw = redis.pcall('GET', key)
  if type(raw) == 'table' then return '\\0HASH' end
  return raw
end
local ref = ARGV[3]
local ids = {}
if ARGV[4] == '1' then
  ids[1] = ref
else
  for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if string.sub(id, 1, #ref) == ref then ids[#ids + 1] = id end
  end
  if #ids ~= 1 then return {ids, false, false, false} end
end
local task = read(ARGV[1] .. ids[1])
local agent = ARGV[5]
if agent == '\\0ASSIGNEE' then
  agent = false
  if task and task ~= '\\0HASH' then
    local ok, record = pcall(cjson.decode, task)
    if ok and type(record) == 'table' and type(record.assigned_to) == 'string' then
      agent = record.assigned_to
    end
  end
elseif agent == '' then
  agent = false
end
local agent_raw = false
if agent then agent_raw = read(ARGV[2] .. agent) end
return {ids, task, agent, agent_raw}
""",
    idempotent=True,
)

#: KEYS[1] the agent name index, KEYS[2] the task index. ARGV[1] agent key prefix,
#: ARGV[2] task key prefix, ARGV[3] '1' to read the agents, ARGV[4] '1' the tasks.
#: Returns {agent raws, task raws} in index order (tasks by creation), absent and
#: non-string records left out.
RECORD_SETS = Script(
    """
local function collect(ids, prefix)
  local out = {}
  for _, id in ipairs(ids) do
    local raw = redis.pcall('GET', prefix .. id)
    if type(raw) == 'string' then out[#out + 1] = raw end
  end
  return out
end
local agents, tasks = {}, {}
if ARGV[3] == '1' then agents = collect(redis.call('HVALS', KEYS[1]), ARGV[1]) end
if ARGV[4] == '1' then tasks = collect(redis.call('ZRANGE', KEYS[2], 0, -1), ARGV[2]) end
return {agents, tasks}
""",
    idempotent=True,
)

#: KEYS[1] the backlog. ARGV[1] task key prefix, ARGV[2] start, ARGV[3] stop (LRANGE
#: positions). Returns {ids, raws}: the backlog's ids in that range and each task's raw
#: record (false when absent or not a string).
BACKLOG_PAGE = Script(
    """
local ids = redis.call('LRANGE', KEYS[1], ARGV[2], ARGV[3])
local raws = {}
for i, id in ipairs(ids) do
  local raw = redis.pcall('GET', ARGV[1] .. id)
  if type(raw) ~= 'string' then raw = false end
  raws[i] = raw
end
return {ids, raws}
""",
    idempotent=True,
)

#: ``agent`` value for :func:`task_and_agent`: the agent the task is assigned to.
ASSIGNEE = "\0ASSIGNEE"


@attrs.frozen
class TaskRead:
    """What :func:`task_and_agent` found."""

    #: Ids of the tasks the reference matched (one for a full id, even an absent one).
    matches: list[str]
    #: The task's raw record (None: absent; :data:`NOT_A_STRING`: a Rust hash).
    task_raw: str | None
    #: The agent read along (None when none was asked for or the task has no assignee).
    agent_id: str | None
    agent_raw: str | None
    #: True when the raws are what this process last saw (``Store.known``), not a read:
    #: a write guarded on them may be refused, and a refusal decided on them is checked
    #: again on a fresh read.
    guessed: bool = False


async def task_and_agent(
    store: Store, ref: str, *, full: bool, agent: str | None = None, guess: bool = False
) -> TaskRead:
    """The task ``ref`` names (a full id when ``full``, else an id prefix matched
    against the task index) and one agent record, in one round trip: ``agent`` is an
    agent id, :data:`ASSIGNEE` (whoever the task is assigned to) or None (no agent).
    ``guess``: with a full id, answer from what this process last saw of the records
    when it knows them all (no round trip; ``guessed`` is then set). Cancellable."""
    keys = store.keys
    if guess and full:
        found = _known(store, ref, agent)
        if found is not None:
            return found
    ids, task_raw, agent_id, agent_raw = await store.redis.run_script(
        TASK_AND_AGENT,
        [keys.tasks],
        [keys.task(""), keys.agent(""), ref, "1" if full else "0", agent or ""],
    )
    return TaskRead(
        matches=[str(i) for i in ids],
        task_raw=task_raw or None,
        agent_id=agent_id or None,
        agent_raw=agent_raw or None,
    )


def _known(store: Store, task_id: str, agent: str | None) -> TaskRead | None:
    """The lookup answered from ``store.known``; None unless every record is known."""
    keys, known = store.keys, store.known
    task_raw = known.raw(keys.task(task_id))
    if task_raw is None:
        return None
    agent_id = agent or None
    if agent == ASSIGNEE:
        try:
            agent_id = json.loads(task_raw).get("assigned_to")
        except (ValueError, AttributeError):
            return None
        if not isinstance(agent_id, str):
            return TaskRead([task_id], task_raw, None, None, guessed=True)
    if agent_id is None:
        return TaskRead([task_id], task_raw, None, None, guessed=True)
    agent_raw = known.raw(keys.agent(agent_id))
    if agent_raw is None:
        return None
    return TaskRead([task_id], task_raw, agent_id, agent_raw, guessed=True)


async def backlog_page(store: Store, start: int, n: int) -> list[tuple[str, str | None]]:
    """(task id, raw record or None) at positions ``start`` .. ``start + n - 1`` of the
    backlog, ids and records in one round trip. Cancellable."""
    ids, raws = await store.redis.run_script(
        BACKLOG_PAGE, [store.keys.backlog], [store.keys.task(""), start, start + n - 1]
    )
    return [(str(i), raw or None) for i, raw in zip(ids, raws, strict=True)]


async def agents_and_inboxes(
    store: Store, agent_ids: Sequence[str]
) -> list[tuple[str | None, int]]:
    """(raw record or None, inbox length) of each agent, in one round trip (idempotent
    reads, retried). Cancellable."""
    if not agent_ids:
        return []
    keys = store.keys
    lengths = [["LLEN", keys.inbox(i)] for i in agent_ids]
    replies = await store.redis.pipeline([["MGET", *map(keys.agent, agent_ids)], *lengths])
    return list(zip(replies[0], (int(n) for n in replies[1:]), strict=True))


async def record_sets(
    store: Store, *, agents: bool = True, tasks: bool = False
) -> tuple[list[str], list[str]]:
    """(every agent's raw record, every task's raw record in creation order), each only
    when asked for, in one round trip. Cancellable."""
    keys = store.keys
    agent_raws, task_raws = await store.redis.run_script(
        RECORD_SETS,
        [keys.agents, keys.tasks],
        [keys.agent(""), keys.task(""), "1" if agents else "0", "1" if tasks else "0"],
    )
    return [str(r) for r in agent_raws], [str(r) for r in task_raws]
