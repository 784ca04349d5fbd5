-- Hand work messages back to the group at once (a draining worker that gives up on them):
-- for each id, add a fresh copy of the message, then acknowledge and delete the old one.
-- KEYS[1] work stream   ARGV[1] group   ARGV[2..] message ids
for i = 2, #ARGV do
  local entry = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if entry[1] then
    redis.call('XADD', KEYS[1], '*', unpack(entry[1][2]))
  end
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('XDEL', KEYS[1], ARGV[i])
end
return #ARGV - 1
