-- Admit URLs (the seeds) once per job, in one shard. ARGV: P, run, budget, then url, depth,
-- referrer, host quadruples (referrer "" for none). Returns how many were queued.
shard_run()
local budget = tonumber(ARGV[3])
local added = 0
for i = 4, #ARGV, 4 do
  local referrer = ARGV[i + 2]
  if referrer == '' then referrer = cjson.null end
  added = added + enqueue(ARGV[i], tonumber(ARGV[i + 1]), referrer, ARGV[i + 3], budget)
end
count(added, 0)
return added
