-- The only way an event enters an execution's log.
-- Checks, in order: existence (mode), terminal guard, expected version, timer to consume;
-- then appends the event with its sequence number and the hash of the previous event, and
-- does the side-writes that belong with it: status, timer to add, work message.
-- All keys share one hash tag (one slot).
--
-- KEYS[1] log stream   KEYS[2] meta hash   KEYS[3] timer wheel   KEYS[4] work stream
-- ARGV[1]  mode: "new" (create; idempotent on the execution id) or "next"
-- ARGV[2]  expected version, or "-1" for "append whatever the version"
-- ARGV[3]  event body (msgpack)
-- ARGV[4]  status after this event
-- ARGV[5]  execution id
-- ARGV[6]  "1" to enqueue a work message
-- ARGV[7]  timer member to add, or ""
-- ARGV[8]  that timer's delay in ms after this entry's time
-- ARGV[9]  that timer's absolute due time in ms ("0": use the delay)
-- ARGV[10] timer member to consume (must be in the wheel and due), or ""
-- ARGV[11] workflow name (mode "new")
-- ARGV[12] "1" if this event is terminal
-- Returns {"ok", entry id, seq} | {"exists"} | {"missing"} | {"conflict", version}
--       | {"ended", version} | {"gone"} | {"early", due}

local log, meta, timers, work = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode, expected = ARGV[1], tonumber(ARGV[2])

local cur = redis.call('HMGET', meta, 'v', 'h', 'end')
local version, prev = tonumber(cur[1]), cur[2] or ''
if mode == 'new' then
  if version then return {'exists'} end
  version = 0
elseif not version then
  return {'missing'}
end

local consume = ARGV[10]
if cur[3] then
  if consume ~= '' then redis.call('ZREM', timers, consume) end
  return {'ended', version}
end
if expected >= 0 and version ~= expected then return {'conflict', version} end

if consume ~= '' then
  local score = redis.call('ZSCORE', timers, consume)
  if not score then return {'gone'} end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if tonumber(score) > now then return {'early', score} end
  redis.call('ZREM', timers, consume)
end

local body = ARGV[3]
local id = redis.call('XADD', log, '*', 's', version, 'p', prev, 'e', body)
local ms = tonumber(string.match(id, '^(%d+)'))
local hash = redis.sha1hex(prev .. '\n' .. version .. '\n' .. body)

if mode == 'new' then
  redis.call('HSET', meta, 'v', version + 1, 'h', hash, 'st', ARGV[4], 'w', ARGV[11],
             'c', ms, 'u', ms)
else
  redis.call('HSET', meta, 'v', version + 1, 'h', hash, 'st', ARGV[4], 'u', ms)
end
if ARGV[12] == '1' then redis.call('HSET', meta, 'end', ms) end

if ARGV[7] ~= '' then
  local due = tonumber(ARGV[9])
  if due == 0 then due = ms + tonumber(ARGV[8]) end
  redis.call('ZADD', timers, due, ARGV[7])
end
if ARGV[6] == '1' then redis.call('XADD', work, '*', 'x', ARGV[5]) end

return {'ok', id, version}
