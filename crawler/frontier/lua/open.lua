-- Join the job's unfinished run, or start the next one. ARGV: P, run_id, started_at.
-- Returns {"resumed" | "new" | "retry", run_id, started_at, run number}; "retry" when the
-- proposed run_id is not after the last run's (two runs within one second).
local run = P .. 'run'
local id = redis.call('HGET', run, 'id')
if id and not redis.call('HGET', run, 'finished_at') then
  return {'resumed', id, redis.call('HGET', run, 'started_at'), redis.call('HGET', run, 'no')}
end
if id and ARGV[2] <= id then
  return {'retry', id, '', '0'}
end
local no = run_no() + 1
redis.call('DEL', P .. 'perhost:' .. (no - 1))
redis.call('HDEL', run, 'finished_at', 'stop_reason')
redis.call('HSET', run, 'id', ARGV[2], 'started_at', ARGV[3], 'no', no, 'sweep', '0')
return {'new', ARGV[2], ARGV[3], tostring(no)}
