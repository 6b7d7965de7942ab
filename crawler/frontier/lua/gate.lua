-- Fleet-wide politeness by windows: one worker at a time holds a host for a short window and
-- spaces and caps its own requests there (its local HostSlot), so a request costs no script;
-- the window costs two (take, give). P is the host's shard prefix; its gate hash holds
--   h holder, u end of the window (ms; no start after it), x when a holder that never gave
--   the window back (it died) loses it, n earliest next start for whoever holds it next,
--   w set while another worker waits for the window, y the holder that gave it up for that
--   waiter at yt (ms): it does not take the window back for YIELD_MS; p the host's pace (ms)
--   as a worker of the fleet last set it (RedisFrontier.pace), handed over with the window.
-- ARGV: P, me, 'take' | 'give', window_ms, grace_ms, ms from now of the holder's next start.
-- Returns, for take, {0 (held now) or the ms to wait before asking again, pace or -1}; 0 for
-- give.
local now = now_ms()
local G = P .. 'gate'
local YIELD_MS = 500
local g = redis.call('HMGET', G, 'h', 'u', 'x', 'n', 'w', 'y', 'yt', 'p')
local holder, x, n = g[1], tonumber(g[3] or '0'), tonumber(g[4] or '0')
local me = ARGV[2]
if holder == me then
  n = math.max(n, now + tonumber(ARGV[6]))
  redis.call('HSET', G, 'n', n)
end
if ARGV[3] == 'give' then
  if holder == me then
    redis.call('HDEL', G, 'h', 'u', 'x', 'w')
  end
  return 0
end
if holder and holder ~= me and now < x then
  redis.call('HSET', G, 'w', '1')
  return {math.max(10, tonumber(g[2]) - now), -1}  -- its end; then it drains, gives it back
end
if holder == me and g[5] then
  redis.call('HDEL', G, 'h', 'u', 'x')
  redis.call('HSET', G, 'y', me, 'yt', now)
  return {50, -1}  -- another worker waits: it takes the window first
end
if not holder and g[5] and g[6] == me and now < tonumber(g[7] or '0') + YIELD_MS then
  return {50, -1}
end
if n > now then
  return {n - now, -1}
end
local window, grace = tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('HSET', G, 'h', me, 'u', now + window, 'x', now + window + grace)
redis.call('HDEL', G, 'w', 'y', 'yt')
redis.call('PEXPIRE', G, window + grace + 3600000)
return {0, tonumber(g[8] or '-1')}
