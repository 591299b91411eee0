-- Stores a job's outcome if the committing delivery still owns the RUNNING job; a stale worker
-- or a job cancelled meanwhile commits nothing. Either way the delivery leaves the QPU's
-- in-flight set when it was the job's current one.
-- KEYS[1] the job
-- ARGV[2] now (µs)
-- ARGV[3] job id
-- ARGV[4] delivery id
-- ARGV[5] outcome: DONE or ERROR
-- ARGV[6] payload: results document (DONE) or errors as a JSON array of strings (ERROR)
-- Also writes the result, the job's indexes, its batch, its QPU's in-flight set and its device
-- type's cost fit (K.*).
-- Returns {R.OK} | {R.STALE, status or 'MISSING'}.
local job, now, job_id, delivery = KEYS[1], ARGV[2], ARGV[3], ARGV[4]
local outcome, payload = ARGV[5], ARGV[6]
local h = redis.call('HMGET', job, 'status', 'delivery', 'batch_id', 'qpu', 'project_id')
if not h[1] or h[2] ~= delivery then return {R.STALE, h[1] or MISSING} end
redis.call('ZREM', K.qpu_inflight(h[4]), job_id)
if h[1] ~= JOB.RUNNING then
  wake_scheduler()
  return {R.STALE, h[1]}
end
-- What it stores counts against its project (set_job_status releases the reservation).
add_stored_bytes(h[5], #payload)
if outcome == JOB.DONE then
  redis.call('SET', K.job_result(job_id), payload)
  -- Shots done, for the batch's progress (`tweezer status`, the dashboard).
  redis.call('HINCRBY', K.batch(h[3]), 'runs_done', redis.call('HGET', job, 'runs'))
  fit_cost(job, h[3], now)
else
  set_job_errors(job_id, payload)
end
set_job_status(job_id, h[3], JOB.RUNNING, outcome, now)
finish_batch_if_complete(h[3], now)
wake_scheduler()
return {R.OK}
