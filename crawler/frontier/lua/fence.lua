-- A reaper's question about a batch whose staged leases expired (its worker died or stalled
-- between prepare and settle), in the job's slot: "committed" when its journal is written
-- (the reaper applies it), else the batch is fenced, its commit refused from now on, and the
-- answer is "fenced" (the reaper queues its URLs again). ARGV: P, batch id.
if redis.call('HEXISTS', P .. 'committed', ARGV[2]) == 1 then
  return 'committed'
end
redis.call('HSET', P .. 'fenced', ARGV[2], 1)
return 'fenced'
