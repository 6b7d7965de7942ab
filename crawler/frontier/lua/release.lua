-- leased -> queued, untouched (a stop, or a page past --max-pages), in one shard. ARGV: P,
-- run, then url, token pairs. A lease that is no longer this token's (it expired) or that is
-- staged (its batch is being committed) is left alone.
local n = 0
for i = 3, #ARGV, 2 do
  local raw = redis.call('HGET', P .. 'lease', ARGV[i])
  if raw then
    local l = cjson.decode(raw)
    if l[1] == ARGV[i + 1] and not l[5] then
      push(ARGV[i], l[2], l[3], l[4], true)
      redis.call('HDEL', P .. 'lease', ARGV[i])
      redis.call('ZREM', P .. 'deadline', ARGV[i])
      n = n + 1
    end
  end
end
return n
