-- The worker of a debounced execution asks whether its window has closed.
-- KEYS[1] the debounce record (hash)   ARGV[1] the execution id
-- Returns {'closed', input, starts} once the window ended (closing it: the next start
-- opens a new window; asking again answers the same until 'forget'), {'open', due ms}
-- while starts keep it open, {'gone'} when the record is not this execution's.
local closed = redis.call('HGET', KEYS[1], 'c:' .. ARGV[1])
if closed then
  return {'closed', closed, redis.call('HGET', KEYS[1], 'cn:' .. ARGV[1]) or '0'}
end
if redis.call('HGET', KEYS[1], 'x') ~= ARGV[1] then
  return {'gone'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = tonumber(redis.call('HGET', KEYS[1], 'due'))
if due > now then
  return {'open', tostring(due)}
end
local input = redis.call('HGET', KEYS[1], 'in')
local starts = redis.call('HGET', KEYS[1], 'n')
redis.call('HDEL', KEYS[1], 'x', 'in', 'due', 'n')
redis.call('HSET', KEYS[1], 'c:' .. ARGV[1], input, 'cn:' .. ARGV[1], starts)
return {'closed', input, starts}
