-- Move an execution's work to another task queue: record the queue in its meta hash and
-- send it a work message on that queue's stream; nothing when the execution is gone (an
-- archived one: its meta hash must not come back).
-- KEYS[1] meta hash   KEYS[2] the target queue's work stream (same hash tag)
-- ARGV[1] the task queue ("" for the default one)   ARGV[2] execution id
-- Returns 1 if moved, 0 if the execution does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '' then
  redis.call('HDEL', KEYS[1], 'q')
else
  redis.call('HSET', KEYS[1], 'q', ARGV[1])
end
redis.call('XADD', KEYS[2], '*', 'x', ARGV[2])
return 1
