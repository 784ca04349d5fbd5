-- Admission gate of one queue key: concurrency cap, priority order, sliding rate window.
-- Every key is in the queue key's slot; the clock is Redis' (TIME).
--
-- KEYS[1] running  zset: execution id -> admission ms
-- KEYS[2] waiting  zset: execution id -> ordering score, lowest admitted first:
--                  score = -priority * 1e12 + (arrival ms - 2024-01-01T00:00Z), raised to
--                  (highest score of the same priority band) + 1 when that is not lower,
--                  so arrivals within one millisecond keep their order
-- KEYS[3] starts   zset: "<id> <ms>" -> admission ms (only with a rate limit)
-- KEYS[4] woken    zset: waiting execution id -> ms a drop last returned it to be woken;
--                  it is not returned again for REWAKE_MS, so a release and a sweep (or
--                  two releases) do not both wake it and two workers do not run it at once
-- ARGV[1] op: admit | drop | counts
-- ARGV[2] concurrency cap (-1: none)
-- ARGV[3] admissions allowed per rate window (0: no rate limit)
-- ARGV[4] rate window length in ms (may have a fraction)
-- ARGV[5] most ids one reply may ask to wake
-- ARGV[6] REWAKE_MS: how long an id a drop returned is not returned again
-- admit: ARGV[7] execution id, ARGV[8] priority, ARGV[9] arrival ms (the execution's
--   creation time: waiting executions of one priority are admitted in the order they were
--   started, whichever worker saw them first; "" = now, raised past the band's last)
--   reply {2, -1, admitted ms} already running, {1, -1, now} admitted now, {0, retry}
--   waiting; retry is the ms until the rate window lets one more in when only the window
--   holds this one back, else -1 (a release will wake it)
-- drop: ARGV[7..] execution ids to remove from running and waiting (none: just look)
--   reply {ids that fit now, retry, running count, waiting count}; retry as for admit,
--   for waiting executions that fit the cap but not the rate window
-- counts: reply {running count, waiting count}
local running, waiting, starts, woken = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local REWAKE_MS = tonumber(ARGV[6])
local op = ARGV[1]
local cap = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local max_wake = tonumber(ARGV[5])

local BAND = 1e12
local EPOCH_MS = 1704067200000

if op == 'counts' then
  return {redis.call('ZCARD', running), redis.call('ZCARD', waiting)}
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function fmt(x)
  return string.format('%.0f', x)
end

-- Room left by the cap and by the rate window, and the ms until the window next opens.
local function room()
  local free = math.huge
  if cap >= 0 then
    free = cap - redis.call('ZCARD', running)
  end
  local rfree, retry = math.huge, -1
  if limit > 0 then
    redis.call('ZREMRANGEBYSCORE', starts, '-inf', now - window)
    local used = redis.call('ZCARD', starts)
    rfree = limit - used
    if used > 0 then
      local oldest = redis.call('ZRANGE', starts, 0, 0, 'WITHSCORES')
      retry = math.max(1, math.ceil(tonumber(oldest[2]) + window - now))
    end
  end
  return free, rfree, retry
end

if op == 'admit' then
  local id, priority = ARGV[7], tonumber(ARGV[8])
  local since = redis.call('ZSCORE', running, id)
  if since then
    return {2, -1, tonumber(since)}
  end
  if not redis.call('ZSCORE', waiting, id) then
    local base = -priority * BAND
    local arrival = tonumber(ARGV[9] or '')
    local score = base + ((arrival or now) - EPOCH_MS)
    if not arrival then
      local last = redis.call('ZREVRANGEBYSCORE', waiting, '(' .. fmt(base + BAND), fmt(base),
                              'WITHSCORES', 'LIMIT', 0, 1)
      if last[2] and tonumber(last[2]) >= score then
        score = tonumber(last[2]) + 1
      end
    end
    redis.call('ZADD', waiting, fmt(score), id)
  end
  local free, rfree, retry = room()
  local rank = redis.call('ZRANK', waiting, id)
  if rank < free and rank < rfree then
    redis.call('ZREM', waiting, id)
    redis.call('ZREM', woken, id)
    redis.call('ZADD', running, now, id)
    if limit > 0 then
      local member = id .. ' ' .. now
      while redis.call('ZSCORE', starts, member) do
        member = member .. '+'
      end
      redis.call('ZADD', starts, now, member)
      redis.call('PEXPIRE', starts, math.ceil(window) + 1000)
    end
    return {1, -1, now}
  end
  if rank < free and retry >= 0 then
    -- only the rate window holds it: its worker wakes it when the window opens, so no
    -- release or sweep wakes it meanwhile (two wake-ups: two workers running it)
    redis.call('ZADD', woken, now + retry, id)
    return {0, retry}
  end
  -- parked (older or higher-priority executions come first): the next release that has
  -- room for it wakes it
  redis.call('ZREM', woken, id)
  return {0, -1}
end

if op == 'drop' then
  for i = 7, #ARGV do
    redis.call('ZREM', running, ARGV[i])
    redis.call('ZREM', waiting, ARGV[i])
    redis.call('ZREM', woken, ARGV[i])
  end
  local free, rfree, retry = room()
  local n = math.min(free, rfree, max_wake)
  local ids = {}
  if n > 0 then
    for _, id in ipairs(redis.call('ZRANGE', waiting, 0, n - 1)) do
      local at = redis.call('ZSCORE', woken, id)
      if not at or tonumber(at) <= now - REWAKE_MS then
        ids[#ids + 1] = id
        redis.call('ZADD', woken, now, id)
      end
    end
  end
  local nwaiting = redis.call('ZCARD', waiting)
  if nwaiting == 0 then
    redis.call('DEL', woken)
  end
  if not (rfree < free and nwaiting > math.max(rfree, 0)) then
    retry = -1
  end
  return {ids, retry, redis.call('ZCARD', running), nwaiting}
end

return redis.error_reply('queue_admit: unknown op ' .. tostring(op))
