-- Keep a live worker's leases (in one shard) or its name (in the job's slot). ARGV: P, run,
-- lease_ms, worker ("" for leases), holder, then url, token pairs. Returns the URLs whose
-- lease was lost (expired and reaped, or taken over).
local now = now_ms()
local lease_ms = tonumber(ARGV[3])
if ARGV[4] ~= '' then
  local name = P .. 'worker:' .. ARGV[4]
  if redis.call('GET', name) == ARGV[5] or redis.call('SET', name, ARGV[5], 'NX', 'PX', lease_ms) then
    redis.call('PEXPIRE', name, lease_ms)
  end
end
local lost = {}
for i = 6, #ARGV, 2 do
  local raw = redis.call('HGET', P .. 'lease', ARGV[i])
  if raw and cjson.decode(raw)[1] == ARGV[i + 1] then
    redis.call('ZADD', P .. 'deadline', 'XX', now + lease_ms, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
