-- Stores a job's outcome if the committing delivery still owns the RUNNING job; a stale worker
-- or a job cancelled meanwhile commits nothing. Either way the delivery leaves the QPU's
-- in-flight set when it was the job's current one.
-- ARGV[2] now (µs)
-- ARGV[3] job id
-- ARGV[4] delivery id
-- ARGV[5] outcome: DONE or ERROR
-- ARGV[6] payload: results document (DONE) or errors as a JSON array of strings (ERROR)
-- Returns {'committed'} | {'stale', status}.
local now, job_id, delivery, outcome, payload = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local job = K.job(job_id)
local h = redis.call('HMGET', job, 'status', 'delivery', 'batch_id', 'qpu', 'created_us')
if not h[1] or h[2] ~= delivery then return {'stale', h[1] or 'MISSING'} end
redis.call('ZREM', K.qpu_inflight(h[4]), job_id)
if h[1] ~= 'RUNNING' then
  wake_scheduler()
  return {'stale', h[1]}
end
-- What it stores counts against its project (set_job_status releases the reservation).
add_stored_bytes(redis.call('HGET', job, 'project_id'), #payload)
if outcome == 'DONE' then
  redis.call('SET', K.job_result(job_id), payload)
else
  redis.call('HSET', job, 'errors', payload)
  redis.call('ZREM', K.job_index('errors', '0'), job_id)
  redis.call('ZADD', K.job_index('errors', '1'), h[5], job_id)
end
set_job_status(job_id, h[3], 'RUNNING', outcome, now)
finish_batch_if_complete(h[3], now)
wake_scheduler()
return {'committed'}
