-- leased -> done | failed | skipped, one batch at once, with the links the batch found and
-- the worker's journal: the records exist from this instant.
-- ARGV: P, worker, seq, run_id, machine, budget, outcomes JSON, totals JSON, then kind, base,
-- data triples. An outcome is {u = url | null, t = token, st = state, f = fetched_at,
-- s = status, e = etag, m = last_modified, h = sha256, x = simhash, ti = title,
-- c = [[url, depth, host, link key]], r = the links' referrer}. Returns {"ok"}, {"again"} for a
-- batch already applied (a retry after a lost reply), or {"lost", urls...} when some lease
-- is no longer ours, in which case nothing at all was written.
local worker, seq, budget = ARGV[2], ARGV[3], tonumber(ARGV[6])
local journal = P .. 'journal:' .. worker
if redis.call('HGET', journal, 'seq') == seq and redis.call('HGET', journal, 'run') == ARGV[4] then
  return {'again'}
end
local outcomes = cjson.decode(ARGV[7])
local lost = {'lost'}
local leases = {}
for i, o in ipairs(outcomes) do
  if o.u ~= cjson.null then
    local raw = redis.call('HGET', P .. 'lease', o.u)
    local l = raw and cjson.decode(raw)
    if not l or l[1] ~= o.t then
      lost[#lost + 1] = o.u
    end
    leases[i] = l
  end
end
if #lost > 1 then
  return lost
end
local function null(v)
  if v == nil then return cjson.null end
  return v
end
local change = 0  -- to P.."pending": links queued less URLs done
for i, o in ipairs(outcomes) do
  for _, c in ipairs(o.c) do
    change = change + enqueue(c[1], c[2], o.r, c[3], budget, c[4])
  end
  if o.u ~= cjson.null then
    local l = leases[i]
    local full = o.st == 'done' and o.s ~= 304 and o.f ~= cjson.null
    -- a full fetch replaces every field: the old entry is read only to keep some of it
    local old = not full and redis.call('HGET', P .. 'hist', o.u)
    local h = old and cjson.decode(old) or {l[2], l[3], l[4], cjson.null}
    h[1], h[2], h[3] = l[2], l[3], l[4]
    if o.f ~= cjson.null then h[4] = o.f end
    if o.st == 'done' and o.s ~= 304 then
      h[5], h[6], h[7], h[8], h[9], h[10] = o.s, o.e, o.m, o.h, o.x, o.ti
      if o.x ~= cjson.null and redis.call('HSETNX', P .. 'np', o.x, o.u) == 1 then
        for b = 0, 3 do
          local bucket = near_bucket(b, o.x)
          if redis.call('STRLEN', bucket) < 8 * NEAR_CAP then
            redis.call('APPEND', bucket, sim_bytes(o.x))
          end
        end
      end
    end
    for k = 5, 10 do h[k] = null(h[k]) end
    redis.call('HSET', P .. 'hist', o.u, cjson.encode(h))
    redis.call('HDEL', P .. 'lease', o.u)
    redis.call('ZREM', P .. 'deadline', o.u)
    change = change - 1
  end
end
if change ~= 0 then
  redis.call('INCRBY', P .. 'pending', change)
end
redis.call('DEL', journal)
redis.call('HSET', journal, 'seq', seq, 'run', ARGV[4], 'machine', ARGV[5], 'totals', ARGV[8])
for i = 9, #ARGV, 3 do
  redis.call('HSET', journal, ARGV[i] .. ':base', ARGV[i + 1], ARGV[i] .. ':data', ARGV[i + 2])
end
redis.call('SADD', P .. 'journals', worker)
return {'ok'}
