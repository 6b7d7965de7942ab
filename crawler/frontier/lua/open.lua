-- Join the job's unfinished run, or start the next one. ARGV: P, run_id, started_at, shards
-- for a new job. Returns {"resumed" | "new" | "retry", run_id, started_at, run number,
-- shards}; "retry" when the proposed run_id is not after the last run's (two runs within one
-- second). The number of shards is the job's from its first run on.
local run = P .. 'run'
redis.call('HSETNX', run, 'shards', ARGV[4])
local shards = redis.call('HGET', run, 'shards')
local id = redis.call('HGET', run, 'id')
if id and not redis.call('HGET', run, 'finished_at') then
  return {'resumed', id, redis.call('HGET', run, 'started_at'), redis.call('HGET', run, 'no'),
          shards}
end
if id and ARGV[2] <= id then
  return {'retry', id, '', '0', shards}
end
local no = run_no() + 1
-- the run before ended with nothing queued or leased: no batch of it is left to settle
redis.call('DEL', P .. 'committed', P .. 'fenced')
redis.call('HDEL', run, 'finished_at', 'stop_reason')
redis.call('HSET', run, 'id', ARGV[2], 'started_at', ARGV[3], 'no', no)
return {'new', ARGV[2], ARGV[3], tostring(no), shards}
