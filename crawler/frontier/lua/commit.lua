-- Phase two of a batch's commit, in the job's slot, and its commit point: the worker's journal
-- (what its files hold after the batch) is written, and the batch is noted as committed, so
-- that its staged leases are applied whoever finds them; the records exist from this instant.
-- Refused for a batch a reaper has fenced (its leases expired before it got here).
-- ARGV: P, worker, seq, run_id, machine, batch id, the worker's batch before it ("" when
-- none, or not this process's), totals JSON, then kind, base, data triples.
-- Returns "ok", "again" (a retry after a lost reply) or "fenced" (nothing written).
local worker, B = ARGV[2], ARGV[6]
local journal = P .. 'journal:' .. worker
if redis.call('HGET', journal, 'batch') == B then
  return 'again'
end
if redis.call('HEXISTS', P .. 'fenced', B) == 1 then
  return 'fenced'
end
redis.call('HSET', P .. 'committed', B, 1)
if ARGV[7] ~= '' then
  redis.call('HDEL', P .. 'committed', ARGV[7])  -- settled by this worker before this one
end
redis.call('DEL', journal)
redis.call('HSET', journal, 'seq', ARGV[3], 'run', ARGV[4], 'machine', ARGV[5], 'batch', B,
           'totals', ARGV[8])
for i = 9, #ARGV, 3 do
  redis.call('HSET', journal, ARGV[i] .. ':base', ARGV[i + 1], ARGV[i] .. ':data', ARGV[i + 2])
end
redis.call('SADD', P .. 'journals', worker)
return 'ok'
