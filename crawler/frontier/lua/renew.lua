-- Keep a live worker's leases and its name. ARGV: P, lease_ms, worker, holder, then url,
-- token pairs. Returns the URLs whose lease was lost (expired and reaped, or taken over).
local now = now_ms()
local lease_ms = tonumber(ARGV[2])
local name = P .. 'worker:' .. ARGV[3]
if redis.call('GET', name) == ARGV[4] or redis.call('SET', name, ARGV[4], 'NX', 'PX', lease_ms) then
  redis.call('PEXPIRE', name, lease_ms)
end
local lost = {}
for i = 5, #ARGV, 2 do
  local raw = redis.call('HGET', P .. 'lease', ARGV[i])
  if raw and cjson.decode(raw)[1] == ARGV[i + 1] then
    redis.call('ZADD', P .. 'deadline', 'XX', now + lease_ms, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
