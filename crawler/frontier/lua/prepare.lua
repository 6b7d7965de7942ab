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

-- Within distance 3 of 64 bits two hashes share one of four 16-bit blocks: look there only.
local earlier = {}
local function near(url, sim)
  for i = 0, 3 do
    local members = redis.call('SMEMBERS', P .. 'nd:' .. i .. ':' .. string.sub(sim, 4 * i + 1, 4 * i + 4))
    for _, m in ipairs(members) do
      local other = string.sub(m, 17)
      if other ~= url and distance(sim, string.sub(m, 1, 16)) <= maxd then
        return other
      end
    end
  end
  for _, e in ipairs(earlier) do
    if e[2] ~= url and distance(sim, e[1]) <= maxd then
      return e[2]
    end
  end
  return cjson.null
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
      earlier[#earlier + 1] = {o.s, o.u}
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
