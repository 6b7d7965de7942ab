-- One step of a new run's recrawl sweep: queue again the URLs fetched at or before the cutoff.
-- ARGV: P, cutoff (epoch seconds), count. Any worker may run a step: the cursor lives in the
-- run hash, and a URL already queued in this run is not queued twice. Returns 1 when done.
local run = P .. 'run'
local cursor = redis.call('HGET', run, 'sweep')
if not cursor or cursor == 'done' then
  return 1
end
local no = run_no()
local cutoff = tonumber(ARGV[2])
local found = redis.call('HSCAN', P .. 'hist', cursor, 'COUNT', tonumber(ARGV[3]))
local items = found[2]
for i = 1, #items, 2 do
  local url = items[i]
  local h = cjson.decode(items[i + 1])
  local fetched = h[4]
  if fetched == nil or fetched == cjson.null or fetched <= cutoff then
    local key, field = seen_slot(url)
    if tonumber(redis.call('HGET', key, field) or '0') < no then
      redis.call('HSET', key, field, no)
      redis.call('HINCRBY', P .. 'perhost:' .. no, h[3], 1)
      push(url, h[1], h[2], h[3], false)
      redis.call('INCR', P .. 'pending')
    end
  end
end
if found[1] == '0' then
  redis.call('HSET', run, 'sweep', 'done')
  return 1
end
redis.call('HSET', run, 'sweep', found[1])
return 0
