-- The only way an event enters an execution's log.
-- Checks, in order: existence (mode), terminal guard, expected version, timer to consume;
-- then appends the event with its sequence number and the hash of the previous event, and
-- does the side-writes that belong with it: status, timer to add, work message.
-- All keys share one hash tag (one slot).
--
-- KEYS[1] log stream   KEYS[2] meta hash   KEYS[3] timer wheel
-- KEYS[4] the default task queue's work stream, and the prefix of the others'
--         ("<KEYS[4]>:<task queue>", same hash tag): the work message goes to the stream of
--         the execution's task queue (meta field "q", absent for the default queue)
-- KEYS[5] prefix of the partition's status indexes (zsets "<prefix><status>", member =
--         execution id, score = creation ms; same hash tag, so the same slot) and of its
--         counts hash "<prefix>@counts" (field "<workflow>\n<status>" -> executions)
-- KEYS[6] the partition's "ended" stream: one entry x=<id> per terminal event, capped
--         near 10,000 entries (clients wait on it instead of on each log)
-- ARGV[1] the call, one msgpack array (one argument: each argument costs client time):
--   1 mode: "new" (create; idempotent on the execution id) or "next"
--   2 expected version, or -1 for "append whatever the version"
--   3 timer member to consume (must be in the wheel and due), or ""
--   4 execution id
--   5 workflow name (mode "new")
--   6 idempotency token: if the execution already saw it, append nothing ("duplicate")
--   7 task queue (mode "new"; "" for the default one)
--   8 the effects, as zart_es.core.Effects encodes them (the one place they are decided):
--     {status ("": unchanged), kept (held statuses that stay although the event names
--     status), terminal, reopens (an operator's repair: only after the end, which it
--     lifts), timer name to arm (""), its delay in ms after this entry, its absolute due
--     ms (0: use the delay), timer names to drop, wakes (send a work message)}
--   A timer's wheel member is "<execution id> <timer name>" (Keys.timer_member).
-- ARGV[2] event body (msgpack)
-- ARGV[3] (keyed chain only) "<chain value> <key id> <previous chain value>": the entry's
--   value, computed by the writer with the audit key Redis never sees, that key's id, and
--   the value the writer linked to, which must be the meta hash's "h" (else "conflict":
--   the writer chains again at the head returned). One argument: each costs client time.
--   Without ARGV[3] the script computes the unkeyed SHA-1 link.
-- Returns {"ok", entry id, seq} | {"exists"} | {"missing"} | {"conflict", version, head}
--       | {"ended", version} | {"gone"} | {"early", due} | {"duplicate"} | {"open", version}

local call = cmsgpack.unpack(ARGV[1])
local mode, expected, consume = call[1], call[2], call[3]
local execution_id, workflow, token, task_queue = call[4], call[5], call[6], call[7]
local fx = call[8]
local status, kept, terminal, reopens = fx[1], fx[2], fx[3], fx[4]
local add_timer, delay, due_at, drops, wakes = fx[5], fx[6], fx[7], fx[8], fx[9]
if reopens and mode == 'next' then mode = 'reopen' end
local body, keyed, key_id, linked = ARGV[2], nil, nil, nil
if ARGV[3] then keyed, key_id, linked = string.match(ARGV[3], '^(%S+) (%S+) ?(%S*)$') end
local log, meta, timers, work, index = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

local cur = redis.call('HMGET', meta, 'v', 'h', 'end', 'st', 'c', 'w', 'q')
local version, prev = tonumber(cur[1]), cur[2] or ''
if mode == 'new' then
  if version then return {'exists'} end
  version = 0
elseif not version then
  return {'missing'}
end

if cur[3] then
  if mode ~= 'reopen' then
    if consume ~= '' then redis.call('ZREM', timers, consume) end
    return {'ended', version}
  end
elseif mode == 'reopen' then
  return {'open', version}
end
if expected >= 0 and version ~= expected then return {'conflict', version, prev} end
if keyed and linked ~= prev then return {'conflict', version, prev} end
if token ~= '' and redis.call('HSETNX', meta, 'k:' .. token, 1) == 0 then
  return {'duplicate'}
end

if consume ~= '' then
  local score = redis.call('ZSCORE', timers, consume)
  if not score then return {'gone'} end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if tonumber(score) > now then return {'early', score} end
  redis.call('ZREM', timers, consume)
end

local keeps = status == ''
for _, held in ipairs(kept) do
  if cur[4] == held then keeps = true end
end
if keeps then status = cur[4] end  -- unchanged, or a held status that stays
if mode == 'reopen' then
  redis.call('HDEL', meta, 'end', 'k:cancel')
  redis.call('HSET', meta, 'o', version)  -- the run's token (see ExecutionState.admission)
end
local id, hash
if keyed then
  id = redis.call('XADD', log, '*', 's', version, 'p', prev, 'k', key_id, 'e', body)
  hash = keyed
else
  id = redis.call('XADD', log, '*', 's', version, 'p', prev, 'e', body)
  hash = redis.sha1hex(prev .. '\n' .. version .. '\n' .. body)
end
local ms = tonumber(string.match(id, '^(%d+)'))

if mode == 'new' then
  redis.call('HSET', meta, 'v', version + 1, 'h', hash, 'st', status, 'w', workflow,
             'c', ms, 'u', ms)
  redis.call('ZADD', index .. 'all', ms, execution_id)
  redis.call('ZADD', index .. status, ms, execution_id)
  redis.call('HINCRBY', index .. '@counts', workflow .. '\n' .. status, 1)
  if task_queue ~= '' then redis.call('HSET', meta, 'q', task_queue) end
else
  task_queue = cur[7] or ''
  redis.call('HSET', meta, 'v', version + 1, 'h', hash, 'st', status, 'u', ms)
  if cur[4] ~= status then
    redis.call('ZREM', index .. cur[4], execution_id)
    redis.call('ZADD', index .. status, tonumber(cur[5]), execution_id)
    redis.call('HINCRBY', index .. '@counts', cur[6] .. '\n' .. cur[4], -1)
    redis.call('HINCRBY', index .. '@counts', cur[6] .. '\n' .. status, 1)
  end
end
if terminal then
  redis.call('HSET', meta, 'end', ms)
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', 10000, '*', 'x', execution_id)
end
for _, name in ipairs(drops) do
  redis.call('ZREM', timers, execution_id .. ' ' .. name)
end

if add_timer ~= '' then
  local due = due_at
  if due == 0 then due = ms + delay end
  redis.call('ZADD', timers, due, execution_id .. ' ' .. add_timer)
end
if wakes then
  if task_queue ~= '' then work = work .. ':' .. task_queue end
  redis.call('XADD', work, '*', 'x', execution_id)
end

return {'ok', id, version}
