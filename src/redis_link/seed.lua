-- Registers written back into the state hash, each only if newer than what the hash holds (the same
-- rule as the publish script, with no history entry and no PUBLISH): how an instance re-seeds a Redis
-- that restarted empty or rolled back, and how values from older bots (which only PUBLISH) reach it.
-- KEYS[1] state hash
-- ARGV field, value (`order key|envelope`), field, value, ...
local written = 0
for i = 1, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  local sep = string.find(value, '|', 1, true)
  if sep then
    local order = string.sub(value, 1, sep - 1)
    local current = redis.call('HGET', KEYS[1], field)
    local newer = true
    if current then
      local held = string.find(current, '|', 1, true)
      if held and string.sub(current, 1, held - 1) >= order then
        newer = false
      end
    end
    if newer then
      redis.call('HSET', KEYS[1], field, value)
      written = written + 1
    end
  end
end
return written
