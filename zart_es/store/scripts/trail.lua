-- Appends one entry to the deployment's operator trail, chained to the one before.
-- KEYS[1] the trail stream   KEYS[2] its head hash (v: entries so far, h: newest chain value)
-- ARGV[1] the version the writer chained at ("-1": any, unkeyed only)
-- ARGV[2] the previous chain value the writer linked to (keyed), or ""
-- ARGV[3] the entry's chain value (keyed: an HMAC computed by the writer), or "" to have
--         the unkeyed SHA-1 link computed here from ARGV[5]
-- ARGV[4] key id (keyed), or ""
-- ARGV[5] the chained body (the canonical encoding of the fields below)
-- ARGV[6..] field, value pairs of the entry (what, by, reason, ...)
-- Returns {"ok", entry id, seq, head} | {"conflict", version, head}
local cur = redis.call('HMGET', KEYS[2], 'v', 'h')
local version, prev = tonumber(cur[1]) or 0, cur[2] or ''
local expected, keyed = tonumber(ARGV[1]), ARGV[3]
if expected >= 0 and (version ~= expected or (keyed ~= '' and ARGV[2] ~= prev)) then
  return {'conflict', version, prev}
end
local hash = keyed
if keyed == '' then hash = redis.sha1hex(prev .. '\n' .. version .. '\n' .. ARGV[5]) end
local fields = {'s', version, 'p', prev}
if ARGV[4] ~= '' then fields[#fields + 1] = 'k'; fields[#fields + 1] = ARGV[4] end
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], '*', unpack(fields))
redis.call('HSET', KEYS[2], 'v', version + 1, 'h', hash)
return {'ok', id, version, hash}
