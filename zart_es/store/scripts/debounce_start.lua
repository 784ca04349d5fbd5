-- A debounced start: join the window open for this workflow and key, or open one.
-- KEYS[1] the debounce record (hash)
-- ARGV[1] the execution id a new window takes   ARGV[2] the start's encoded input
-- ARGV[3] the window (ms)                         ARGV[4] how long the record lives (ms)
-- The window's end moves to now + window (Redis' clock); the latest input wins.
-- Returns {execution id of the window, 1 if this call opened it else 0}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local open = redis.call('HGET', KEYS[1], 'x')
local opened = 0
if not open then
  open = ARGV[1]
  opened = 1
  redis.call('HSET', KEYS[1], 'x', open, 'n', 0)
end
redis.call('HSET', KEYS[1], 'in', ARGV[2], 'due', now + tonumber(ARGV[3]))
redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {open, opened}
