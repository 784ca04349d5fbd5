-- Compare-and-set of one hash field, the value compared by its bytes ('' = field absent).
-- KEYS[1] hash   ARGV[1] field   ARGV[2] expected value   ARGV[3] new value
-- Returns {1, ''} when it wrote, {0, <current value or ''>} when it did not.
local current = redis.call('HGET', KEYS[1], ARGV[1])
if (current or '') ~= ARGV[2] then
  return {0, current or ''}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return {1, ''}
