"""The Lua scripts that make multi-key changes atomic."""

from __future__ import annotations

from tinytown.store.client import Script

#: Compare-and-set one record, check guards, then run a list of commands, atomically.
#: KEYS[1] record key. ARGV[1] expected current value ('*' = don't check, '' = must be
#: absent). ARGV[2] new value ('' = leave as is, '\0DEL' = delete). ARGV[3] JSON list of
#: commands. ARGV[4] JSON list of guards [[command], expected reply].
#: ARGV[5..] long arguments of the commands: a command argument written as ``[n]`` in the
#: JSON stands for ARGV[4 + n] (so a message is not JSON-escaped a second time).
#: Returns 1 on success, 0 when the record changed underneath, -i when guard i failed.
#: Not idempotent (its ops may push, publish, XADD): see Store.apply for a lost reply.
APPLY = Script(
    """
local expected = ARGV[1]
if expected ~= '*' then
  local cur = redis.call('GET', KEYS[1])
  if expected == '' then
    if cur then return 0 end
  elseif cur ~= expected then
    return 0
  end
end
local guards = cjson.decode(ARGV[4])
for i, g in ipairs(guards) do
  if redis.call(unpack(g[1])) ~= g[2] then return -i end
end
if ARGV[2] == '\\0DEL' then
  redis.call('DEL', KEYS[1])
elseif ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2])
end
for _, op in ipairs(cjson.decode(ARGV[3])) do
  for i, a in ipairs(op) do
    if type(a) == 'table' then op[i] = ARGV[4 + a[1]] end
  end
  redis.call(unpack(op))
end
return 1
"""
)

#: Check guards, then run commands, atomically; the arguments are flat (no JSON: see
#: store/flat.py). ARGV[1] number of guards; per guard: its length n, the n words of the
#: command, the reply it must give (as text); then per command: its length n, its n words.
#: Returns 1 on success, -i when guard i failed (nothing ran). Not idempotent.
#: One pseudo-command, ``TT.DELIVER inbox inflight agent lease wake id push payload``
#: (``Store.deliver_ops(direct=True)``): a message for an idle agent of a running town
#: whose inbox is empty goes straight into its in-flight list -- taken, as TAKE would --
#: and is published with its recipient (``id\npayload``), so the agent holds it without a
#: round trip of its own; otherwise it is pushed (``push``: RPUSH or LPUSH) into the
#: inbox and the recipient's id published, as any delivery.
FLAT = Script(
    """
local function deliver(i)
  local inbox, inflight, agent, lease = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local wake, id, push, payload = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  if redis.call('LLEN', inbox) == 0 and redis.call('EXISTS', lease) == 1 then
    local record = redis.call('GET', agent)
    if record and cjson.decode(record).state == 'idle' then
      redis.call('RPUSH', inflight, payload)
      redis.call('PUBLISH', wake, id .. '\\n' .. payload)
      return
    end
  end
  redis.call(push, inbox, payload)
  redis.call('PUBLISH', wake, id)
end
local i = 2
for g = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[i])
  if tostring(redis.call(unpack(ARGV, i + 1, i + n))) ~= ARGV[i + n + 1] then return -g end
  i = i + n + 2
end
local last = #ARGV
while i <= last do
  local n = tonumber(ARGV[i])
  if ARGV[i + 1] == 'TT.DELIVER' then
    deliver(i + 2)
  else
    redis.call(unpack(ARGV, i + 1, i + n))
  end
  i = i + n + 1
end
return 1
"""
)

#: Move up to ARGV[1] messages from the inbox (KEYS[1]) to the in-flight list (KEYS[2]),
#: oldest first; return them. The messages are never outside a list. Not idempotent: after
#: a lost reply the messages are in flight, unseen; the caller recovers them from there.
TAKE = Script(
    """
local out = {}
for i = 1, tonumber(ARGV[1]) do
  local m = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not m then break end
  out[#out + 1] = m
end
return out
"""
)

#: Put every in-flight message (KEYS[1]) back at the head of the inbox (KEYS[2]), in order.
#: Idempotent as a goal ("nothing left in flight"); a retried run returns the count of
#: its own run only.
RETURN_INFLIGHT = Script(
    """
local n = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT') do n = n + 1 end
return n
""",
    idempotent=True,
)

#: Refresh ``last_heartbeat`` inside each agent JSON (KEYS) to ARGV[1], in one round trip.
#: A textual replacement keeps the record's own encoding intact.
HEARTBEAT = Script(
    """
local stamp = '"last_heartbeat":"' .. ARGV[1] .. '"'
local n = 0
for _, key in ipairs(KEYS) do
  local cur = redis.call('GET', key)
  if cur then
    local new, count = string.gsub(cur, '"last_heartbeat":"[^"]*"', stamp, 1)
    if count == 1 then redis.call('SET', key, new); n = n + 1 end
  end
end
return n
""",
    idempotent=True,
)

#: Take or refresh the runtime lease KEYS[1] for holder ARGV[1], ARGV[2] ms.
#: Returns the current holder (equal to ARGV[1] when we hold it). Idempotent: a second
#: run by the holder refreshes again and answers the same.
LEASE = Script(
    """
local cur = redis.call('GET', KEYS[1])
if not cur or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return cur
""",
    idempotent=True,
)

#: Release the lease KEYS[1] if ARGV[1] holds it. Idempotent in effect (a retry answers 0).
RELEASE = Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""",
    idempotent=True,
)
