-- Phase three of a batch's commit, in one shard: leased -> done | failed | skipped for the
-- batch's staged leases here once its journal is written ("apply"), or leased -> queued when
-- the batch was fenced and will never commit ("requeue", by a reaper). Either way the stage
-- is gone after, so a batch is settled once however many workers try.
-- ARGV: P, run, batch id, "apply" | "requeue". Returns how many leases it settled.
local B, mode = ARGV[3], ARGV[4]
local stage = P .. 'stage:' .. B
local raw = redis.call('HGET', stage, 'o')
if not raw then
  return 0
end
local function null(v)
  if v == nil then return cjson.null end
  return v
end
local settled, done = 0, 0
for _, o in ipairs(cjson.decode(raw)) do
  local lraw = redis.call('HGET', P .. 'lease', o.u)
  local l = lraw and cjson.decode(lraw)
  if l and l[5] == B then
    if mode == 'apply' then
      local full = o.st == 'done' and o.s ~= 304 and o.f ~= cjson.null
      -- a full fetch replaces every field: the old entry is read only to keep some of it
      local old = not full and redis.call('HGET', P .. 'hist', o.u)
      local h = old and cjson.decode(old) or {l[2], l[3], l[4], cjson.null}
      h[1], h[2], h[3] = l[2], l[3], l[4]
      if o.f ~= cjson.null then h[4] = o.f end
      if o.st == 'done' and o.s ~= 304 then
        h[5], h[6], h[7], h[8], h[9], h[10] = o.s, o.e, o.m, o.h, o.x, o.ti
      end
      for k = 5, 10 do h[k] = null(h[k]) end
      redis.call('HSET', P .. 'hist', o.u, cjson.encode(h))
      done = done + 1
    else
      push(o.u, l[2], l[3], l[4], true)
    end
    redis.call('HDEL', P .. 'lease', o.u)
    redis.call('ZREM', P .. 'deadline', o.u)
    settled = settled + 1
  end
end
count(0, done)
redis.call('DEL', stage)
return settled
