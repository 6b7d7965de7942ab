-- Phase one of a batch's commit, in one shard: are the batch's leases here still ours (each
-- then extended by a lease and staged: marked with the batch id, its outcome kept in the
-- stage), which of its links into this shard are new (queued at once: harmless if the batch
-- never commits, the page is fetched again and finds them seen). Near duplicates are the
-- job's, looked up beside it (near.lua).
-- ARGV: P, run, lease_ms, budget, batch id, outcomes JSON [{u = url, t = token,
-- st = state, f = fetched_at, s = status, e = etag, m = last_modified, h = sha256,
-- x = simhash, ti = title}] (kept as sent in the stage: settle skips those not staged),
-- links JSON [{r = referrer, k = index in the outcomes of the page the links are of (0: none
-- here), c = [[url, depth, host, link key]]}].
-- Returns JSON {o = [{ok}], l = [[0 | 1]]}; the same answer
-- again for a batch already staged (a retry after a lost reply).
shard_run()
local B = ARGV[5]
local stage = P .. 'stage:' .. B
local kept = redis.call('HGET', stage, 'a')
if kept then
  return kept
end
local now = now_ms()
local lease_ms, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local batch = {o = cjson.decode(ARGV[6]), l = cjson.decode(ARGV[7])}

local answer = {o = {}, l = {}}
local staged = 0
for i, o in ipairs(batch.o) do
  local r = {ok = true}
  local raw = redis.call('HGET', P .. 'lease', o.u)
  local l = raw and cjson.decode(raw)
  if l and l[1] == o.t and not l[5] then
    redis.call('ZADD', P .. 'deadline', 'XX', now + lease_ms, o.u)
    l[5] = B
    redis.call('HSET', P .. 'lease', o.u, cjson.encode(l))
    staged = staged + 1
  else
    r.ok = false
  end
  answer.o[i] = r
end
local added = 0
for i, g in ipairs(batch.l) do
  local flags = {}
  local ok = g.k == 0 or answer.o[g.k].ok
  for j, c in ipairs(g.c) do
    local got = ok and enqueue(c[1], c[2], g.r, c[3], budget, c[4]) or 0
    flags[j] = got
    added = added + got
  end
  answer.l[i] = flags
end
count(added, 0)
local encoded = cjson.encode(answer)
if staged > 0 then
  redis.call('HSET', stage, 'o', ARGV[6], 'a', encoded)
end
return encoded
