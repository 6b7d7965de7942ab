-- Fleet-wide politeness at the instant a request starts. ARGV: P, host, per_host, delay_ms,
-- token, hold_ms. Takes one of the host's `per_host` places and the next start time, or says
-- how many ms to wait. A place whose holder died frees itself after hold_ms.
local now = now_ms()
local busy = P .. 'busy:' .. ARGV[2]
redis.call('ZREMRANGEBYSCORE', busy, '-inf', now)
local start = tonumber(redis.call('HGET', P .. 'next', ARGV[2]) or '0')
if start > now then
  return start - now
end
if redis.call('ZCARD', busy) >= tonumber(ARGV[3]) then
  return 5
end
redis.call('ZADD', busy, now + tonumber(ARGV[6]), ARGV[5])
redis.call('PEXPIRE', busy, tonumber(ARGV[6]))
redis.call('HSET', P .. 'next', ARGV[2], now + tonumber(ARGV[4]))
return 0
