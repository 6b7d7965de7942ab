-- One step of a new run's recrawl sweep over one shard's history: queue again the URLs
-- fetched at or before the cutoff. ARGV: P, run, cutoff (epoch seconds), count. Any worker
-- may run a step: the cursor lives in the shard, and a URL already queued in this run is not
-- queued twice. Returns 1 when the shard is done.
shard_run()
local state = P .. 'sweep'
local got = redis.call('HMGET', state, 'run', 'cursor')
local no = run_no()
local cursor = got[2]
if tonumber(got[1] or '0') ~= no then
  redis.call('DEL', P .. 'perhost:' .. (no - 1))  -- the budgets of the run before
  cursor = '0'
end
if cursor == 'done' then
  return 1
end
local cutoff = tonumber(ARGV[3])
local found = redis.call('HSCAN', P .. 'hist', cursor, 'COUNT', tonumber(ARGV[4]))
local items = found[2]
local added = 0
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
      added = added + 1
    end
  end
end
count(added, 0)
local next_cursor = found[1] == '0' and 'done' or found[1]
redis.call('HSET', state, 'run', no, 'cursor', next_cursor)
return next_cursor == 'done' and 1 or 0
