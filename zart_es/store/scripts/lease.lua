-- Heartbeat of a worker's in-flight work messages on one partition's work stream.
-- For each id still owned by this consumer, reset its idle time (XCLAIM ... JUSTID);
-- return the ids it no longer owns (reclaimed by another worker, or acked).
-- KEYS[1] work stream   ARGV[1] group   ARGV[2] consumer   ARGV[3..] message ids
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
