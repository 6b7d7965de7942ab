-- The job's near-duplicate index, in a slot of its own ("crawl:{JOB:#near}:"), so that a page
-- is compared with every earlier page of the job whatever its host's shard: for each page of
-- a batch, the URL of an earlier page within the distance (or null), then the page is filed.
-- Filed at once, a page is found by the batch's later pages and by every batch after it; a
-- page whose batch never commits is fetched again and finds its own entry, which is skipped.
-- ARGV: P, distance, pages JSON [[url, simhash]]. Returns JSON [near duplicate url | null].
local maxd = tonumber(ARGV[2])
local pages = cjson.decode(ARGV[3])

-- Within distance 3 of 64 bits two hashes share one of four 16-bit blocks: look in the four
-- buckets only (at most NEAR_CAP fingerprints each, see common.lua).
-- bits set in each byte value, so that a stored fingerprint is compared in at most 6 lookups
local POP = {[0] = 0}
for v = 1, 255 do POP[v] = POP[bit.rshift(v, 1)] + bit.band(v, 1) end
local bxor, byte = bit.bxor, string.byte

local function near(url, sim)
  local q = {byte(sim_bytes(sim), 1, 8)}
  for i = 0, 3 do
    local packed = redis.call('GET', near_bucket(i, sim))
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
                return page
              end
            end
          end
        end
      end
    end
  end
  return cjson.null
end

local function file(url, sim)
  if redis.call('HSETNX', P .. 'np', sim, url) == 1 then
    local packed = sim_bytes(sim)
    for b = 0, 3 do
      local bucket = near_bucket(b, sim)
      if redis.call('STRLEN', bucket) < 8 * NEAR_CAP then
        redis.call('APPEND', bucket, packed)
      end
    end
  end
end

local answer = {}
for i, page in ipairs(pages) do
  answer[i] = near(page[1], page[2])
  file(page[1], page[2])
end
return cjson.encode(answer)
