-- queued -> leased, in one shard. ARGV: P (the shard's prefix), run, worker, n, lease_ms,
-- per-host cap, delay_ms, skip hosts...
-- First returns the shard's expired leases to the queue; then takes up to n URLs from the
-- hosts whose next lease time has come, at most `cap` per host (1 when the host has a delay),
-- and moves each host back by the delay. Returns {{url, depth, referrer, token, hist or
-- false}...}, {staged batch ids whose leases expired (see reap)}, hosts still listed.
shard_run()
local now = now_ms()
local staged = reap(now, 1000)
local worker, n, lease_ms = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local cap, delay = tonumber(ARGV[6]), tonumber(ARGV[7])
if delay > 0 then cap = 1 end
local skip = {}
for i = 8, #ARGV do skip[ARGV[i]] = true end
local out = {}
if n > 0 then
  -- this call's tokens are numbered from one INCRBY, reserved for at most n of them
  local serial = redis.call('INCRBY', P .. 'tokens', n) - n
  local hosts = redis.call('ZRANGEBYSCORE', P .. 'ready', '-inf', now, 'LIMIT', 0, n + #ARGV)
  for _, host in ipairs(hosts) do
    if #out >= n then break end
    if not skip[host] then
      local queue = P .. 'q:' .. host
      local taken = 0
      while taken < cap and #out < n do
        local raw = redis.call('LPOP', queue)
        if not raw then break end
        local e = cjson.decode(raw)
        serial = serial + 1
        local token = worker .. ':' .. serial
        redis.call('HSET', P .. 'lease', e[1], cjson.encode({token, e[2], e[3], host}))
        redis.call('ZADD', P .. 'deadline', now + lease_ms, e[1])
        local hist = redis.call('HGET', P .. 'hist', e[1])
        out[#out + 1] = {e[1], e[2], e[3] == cjson.null and '' or e[3], token, hist}
        taken = taken + 1
      end
      if redis.call('LLEN', queue) == 0 then
        redis.call('ZREM', P .. 'ready', host)
      else
        redis.call('ZADD', P .. 'ready', now + delay * taken, host)
      end
    end
  end
end
return {out, staged, redis.call('ZCARD', P .. 'ready')}
