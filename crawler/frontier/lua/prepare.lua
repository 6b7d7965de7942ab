-- Before a batch's records are written: are its leases still ours (each then extended by a
-- lease), which of its links are new, and which page is a near duplicate of an earlier one.
-- ARGV: P, lease_ms, distance, JSON [{u = url | null, t = token, s = simhash | null,
-- c = [link keys (link_key)]}]. Returns JSON [{ok, n = near duplicate url | null, a = [0 | 1]}].
-- Nothing is written but deadlines: the batch becomes real in ack.lua.
local now = now_ms()
local lease_ms, maxd = tonumber(ARGV[2]), tonumber(ARGV[3])
local batch = cjson.decode(ARGV[4])

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
-- buckets of the batch's earlier pages, which ack.lua has not filed yet.
-- bits set in each byte value, so that a stored fingerprint is compared in 8 lookups
local POP = {[0] = 0}
for v = 1, 255 do POP[v] = POP[bit.rshift(v, 1)] + bit.band(v, 1) end
local bxor = bit.bxor
local batch_buckets = {}
local function near(url, sim)
  local found = cjson.null
  local s1, s2, s3, s4, s5, s6, s7, s8 = string.byte(sim_bytes(sim), 1, 8)
  for i = 0, 3 do
    local key = near_bucket(i, sim)
    local packed = found == cjson.null and redis.call('GET', key)
    if packed then
      for j = 1, #packed, 8 do
        local b1, b2, b3, b4, b5, b6, b7, b8 = string.byte(packed, j, j + 7)
        local d = POP[bxor(b1, s1)] + POP[bxor(b2, s2)] + POP[bxor(b3, s3)] + POP[bxor(b4, s4)]
          + POP[bxor(b5, s5)] + POP[bxor(b6, s6)] + POP[bxor(b7, s7)] + POP[bxor(b8, s8)]
        if d <= maxd then
          local page = redis.call('HGET', P .. 'np', sim_hex(packed, j))
          if page and page ~= url then
            found = page
            break
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

local fresh = {}
local out = {}
for _, o in ipairs(batch) do
  local r = {ok = true, n = cjson.null, a = {}}
  if o.u ~= cjson.null then
    local raw = redis.call('HGET', P .. 'lease', o.u)
    if raw and cjson.decode(raw)[1] == o.t then
      redis.call('ZADD', P .. 'deadline', 'XX', now + lease_ms, o.u)
    else
      r.ok = false
    end
    if r.ok and o.s ~= cjson.null then
      r.n = near(o.u, o.s)
    end
  end
  for i, h in ipairs(o.c) do
    local key, field = seen_of(h)
    if r.ok and not fresh[h] and redis.call('HEXISTS', key, field) == 0 then
      fresh[h] = true
      r.a[i] = 1
    else
      r.a[i] = 0
    end
  end
  out[#out + 1] = r
end
return cjson.encode(out)
