-- Phase one of a batch's commit, in one shard: are the batch's leases here still ours (each
-- then extended by a lease and staged: marked with the batch id, its outcome kept in the
-- stage), which of its links into this shard are new (queued at once: harmless if the batch
-- never commits, the page is fetched again and finds them seen), and which page is a near
-- duplicate of an earlier one of the shard.
-- ARGV: P, run, lease_ms, distance, budget, batch id, outcomes JSON [{u = url, t = token,
-- st = state, f = fetched_at, s = status, e = etag, m = last_modified, h = sha256,
-- x = simhash, ti = title}] (kept as sent in the stage: settle skips those not staged),
-- links JSON [{r = referrer, k = index in the outcomes of the page the links are of (0: none
-- here), c = [[url, depth, host, link key]]}].
-- Returns JSON {o = [{ok, n = near duplicate url | null}], l = [[0 | 1]]}; the same answer
-- again for a batch already staged (a retry after a lost reply).
shard_run()
local B = ARGV[6]
local stage = P .. 'stage:' .. B
local kept = redis.call('HGET', stage, 'a')
if kept then
  return kept
end
local now = now_ms()
local lease_ms, maxd, budget = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local batch = {o = cjson.decode(ARGV[7]), l = cjson.decode(ARGV[8])}

local function distance(a, b)
  local d = 0
  for i = 1, 16, 4 do
    local x = bit.bxor(tonumber(string.sub(a, i, i + 3), 16), tonumber(string.sub(b, i, i + 3), 16))
    while x ~= 0 do
      d = d + 1
      x = bit.band(x, x - 1)
    end
  end
  return d
end

-- Within distance 3 of 64 bits two hashes share one of four 16-bit blocks: look in the four
-- buckets only (at most NEAR_CAP fingerprints each, see common.lua), and in the same four
-- buckets of the batch's earlier pages, which settle.lua has not filed yet.
-- bits set in each byte value, so that a stored fingerprint is compared in at most 6 lookups
local POP = {[0] = 0}
for v = 1, 255 do POP[v] = POP[bit.rshift(v, 1)] + bit.band(v, 1) end
local bxor, byte = bit.bxor, string.byte
local batch_buckets = {}
local function near(url, sim)
  local found = cjson.null
  local q = {byte(sim_bytes(sim), 1, 8)}
  for i = 0, 3 do
    local key = near_bucket(i, sim)
    local packed = found == cjson.null and redis.call('GET', key)
    if packed then
      -- the bucket's fingerprints agree with `sim` on block i (bytes 7 - 2i and 8 - 2i):
      -- only the other six bytes are compared, two at a time, most leaving after two
      local o = {}
      for k = 1, 8 do
        if k ~= 7 - 2 * i and k ~= 8 - 2 * i then o[#o + 1] = k end
      end
      local o1, o2, o3, o4, o5, o6 = o[1], o[2], o[3], o[4], o[5], o[6]
      local q1, q2, q3, q4, q5, q6 = q[o1], q[o2], q[o3], q[o4], q[o5], q[o6]
      for j = 0, #packed - 8, 8 do
        local d = POP[bxor(byte(packed, j + o1), q1)] + POP[bxor(byte(packed, j + o2), q2)]
        if d <= maxd then
          d = d + POP[bxor(byte(packed, j + o3), q3)] + POP[bxor(byte(packed, j + o4), q4)]
          if d <= maxd then
            d = d + POP[bxor(byte(packed, j + o5), q5)] + POP[bxor(byte(packed, j + o6), q6)]
            if d <= maxd then
              local page = redis.call('HGET', P .. 'np', sim_hex(packed, j + 1))
              if page and page ~= url then
                found = page
                break
              end
            end
          end
        end
      end
    end
    local mates = batch_buckets[key]
    if not mates then
      mates = {}
      batch_buckets[key] = mates
    end
    if found == cjson.null then
      for _, e in ipairs(mates) do
        if e[2] ~= url and distance(sim, e[1]) <= maxd then
          found = e[2]
          break
        end
      end
    end
    mates[#mates + 1] = {sim, url}
  end
  return found
end

local answer = {o = {}, l = {}}
local staged = 0
for i, o in ipairs(batch.o) do
  local r = {ok = true, n = cjson.null}
  local raw = redis.call('HGET', P .. 'lease', o.u)
  local l = raw and cjson.decode(raw)
  if l and l[1] == o.t and not l[5] then
    redis.call('ZADD', P .. 'deadline', 'XX', now + lease_ms, o.u)
    l[5] = B
    redis.call('HSET', P .. 'lease', o.u, cjson.encode(l))
    staged = staged + 1
    if o.st == 'done' and o.s ~= 304 and o.x ~= cjson.null then
      r.n = near(o.u, o.x)
    end
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
  redis.call('HSET', stage, 'o', ARGV[7], 'a', encoded)
end
return encoded
