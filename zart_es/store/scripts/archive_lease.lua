-- Take or renew the lease of one partition's archiver: one archiver works a partition at
-- a time; a holder that dies (kill -9) loses it when it expires, and another takes over.
-- The lease is a field of the partition's archiver hash, "<owner> <expiry ms>" on Redis'
-- clock (hash commands only: the least-privilege ACL user of deploy/acl.conf has them).
-- KEYS[1] the partition's archiver hash   ARGV[1] owner   ARGV[2] lease in ms
-- Returns 1 when ARGV[1] holds the lease (taken or renewed), 0 when another does.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = redis.call('HGET', KEYS[1], 'lease')
if held then
  local owner, expiry = string.match(held, '^(%S+) (%d+)$')
  if owner ~= ARGV[1] and expiry and tonumber(expiry) > now then
    return 0
  end
end
redis.call('HSET', KEYS[1], 'lease', ARGV[1] .. ' ' .. (now + tonumber(ARGV[2])))
return 1
