-- Note how an invocation ended. ARGV: P, run_id, stop_reason, finished_at ("" when it only
-- paused). The run is finished once, by the first worker that saw nothing queued or leased in
-- any shard (two equal collects of every shard's counts: RedisFrontier.pending).
local run = P .. 'run'
if redis.call('HGET', run, 'id') ~= ARGV[2] or redis.call('HGET', run, 'finished_at') then
  return 0
end
if ARGV[4] ~= '' then
  redis.call('HSET', run, 'finished_at', ARGV[4], 'stop_reason', ARGV[3])
  return 1
end
return 0
