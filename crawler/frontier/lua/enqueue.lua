-- Admit URLs (the seeds) once per job. ARGV: P, budget, then url, depth, referrer, host
-- quadruples (referrer "" for none). Returns how many were queued.
local budget = tonumber(ARGV[2])
local added = 0
for i = 3, #ARGV, 4 do
  local referrer = ARGV[i + 2]
  if referrer == '' then referrer = cjson.null end
  added = added + enqueue(ARGV[i], tonumber(ARGV[i + 1]), referrer, ARGV[i + 3], budget)
end
if added > 0 then
  redis.call('INCRBY', P .. 'pending', added)
end
return added
