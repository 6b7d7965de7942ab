-- No request to the host starts, fleet-wide, within ARGV[2] ms (Retry-After, back-off): the
-- next holder of its window waits for it. ARGV: P (the host's shard prefix), ms.
local G = P .. 'gate'
local until_ms = now_ms() + tonumber(ARGV[2])
if until_ms > tonumber(redis.call('HGET', G, 'n') or '0') then
  redis.call('HSET', G, 'n', until_ms)
  if redis.call('PTTL', G) < tonumber(ARGV[2]) + 3600000 then
    redis.call('PEXPIRE', G, tonumber(ARGV[2]) + 3600000)
  end
end
return 0
