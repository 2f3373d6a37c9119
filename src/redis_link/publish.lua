-- One local event, atomically: write its register only if newer, append it to the history stream
-- (trimmed to the retention window), publish it, and publish the admin audit copy when there is one.
-- With an empty channel (ARGV[4]) and audit channel (ARGV[7]) it only writes: that is how an event
-- already sent by a plain PUBLISH while Redis refused writes reaches the state hash and history later.
-- An empty register field (ARGV[1]) writes no register: a vote lives only in its window.
-- KEYS[1] state hash, KEYS[2] history stream
-- ARGV[1] register field, ARGV[2] order key, ARGV[3] envelope, ARGV[4] channel,
-- ARGV[5] oldest history id to keep (ms), ARGV[6] event type, ARGV[7] audit channel, ARGV[8] audit envelope
local current = false
local newer = ARGV[1] ~= ''
if newer then
  current = redis.call('HGET', KEYS[1], ARGV[1])
end
if current then
  local sep = string.find(current, '|', 1, true)
  if sep and string.sub(current, 1, sep - 1) >= ARGV[2] then
    newer = false
  end
end
if newer then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3])
end
redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[5], '*', 'type', ARGV[6], 'event', ARGV[3])
local receivers = 0
if ARGV[4] ~= '' then
  receivers = redis.call('PUBLISH', ARGV[4], ARGV[3])
end
if ARGV[8] ~= '' then
  redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[5], '*', 'type', 'admin_command', 'event', ARGV[8])
  if ARGV[7] ~= '' then
    redis.call('PUBLISH', ARGV[7], ARGV[8])
  end
end
return receivers
