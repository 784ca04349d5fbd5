-- Take or renew the lease of one partition's archiver: one archiver works a partition at
-- a time; a holder that dies (kill -9) loses it when it expires, and another takes over.
-- KEYS[1] the partition's archiver lease   ARGV[1] owner   ARGV[2] lease in ms
-- Returns 1 when ARGV[1] holds the lease (taken or renewed), 0 when another does.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
