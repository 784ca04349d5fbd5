-- Remove one archived execution from Redis: its log, its meta hash, its index entries.
-- Runs only after the archive holds the execution durably; re-checks here, atomically,
-- that it is still ended and unchanged since it was read for the archive (an operator's
-- repair may have reopened it meanwhile: then nothing is deleted and it stays live).
-- All keys share the execution's partition hash tag (one slot).
--
-- KEYS[1] log stream   KEYS[2] meta hash   KEYS[3] prefix of the partition's status
-- indexes and counts hash (see append.lua)   KEYS[4] the partition's archive-due zset
-- ARGV[1] execution id   ARGV[2] the version (event count) that was archived
-- Returns "ok" (deleted) | "gone" (no such execution: already purged) | "changed"
-- (not ended, or a version other than ARGV[2]: kept). Every reply drops it from KEYS[4].

local log, meta, index, due = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local execution_id, archived = ARGV[1], ARGV[2]
redis.call('ZREM', due, execution_id)
local cur = redis.call('HMGET', meta, 'v', 'end', 'st', 'w')
if not cur[1] then
  return 'gone'
end
if not cur[2] or cur[1] ~= archived then
  return 'changed'
end
redis.call('DEL', log, meta)
redis.call('ZREM', index .. 'all', execution_id)
redis.call('ZREM', index .. cur[3], execution_id)
local counts = index .. '@counts'
local field = cur[4] .. '\n' .. cur[3]
if redis.call('HINCRBY', counts, field, -1) <= 0 then
  redis.call('HDEL', counts, field)
end
return 'ok'
