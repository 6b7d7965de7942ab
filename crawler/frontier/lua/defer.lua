-- No request to the host starts, fleet-wide, within ARGV[3] ms (Retry-After, back-off).
-- ARGV: P, host, ms.
local until_ms = now_ms() + tonumber(ARGV[3])
local start = tonumber(redis.call('HGET', P .. 'next', ARGV[2]) or '0')
if until_ms > start then
  redis.call('HSET', P .. 'next', ARGV[2], until_ms)
end
return 0
