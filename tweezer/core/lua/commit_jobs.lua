-- Stores the outcomes of jobs of one delivery (a worker's chunk, or the part of it that ran
-- since its last commit), each only if the delivery still owns the RUNNING job: a stale
-- worker's, or a job cancelled meanwhile, stores nothing. Either way a job whose current
-- delivery this is leaves the QPU's in-flight set.
-- KEYS the jobs
-- ARGV[2] now (µs)
-- ARGV[3] delivery id
-- ARGV[4..] five per job: job id; outcome, DONE or ERROR; payload, the results document (DONE)
--           or the errors as a JSON array of strings (ERROR); when its run began on the worker
--           (µs) and how long it ran (s), or '' and '': from its claim to now
-- Also writes the results, the jobs' indexes, their batch, their QPU's in-flight set and their
-- device type's cost fit (K.*).
-- Returns {R.OK, job id, status or 'MISSING', ...}: the jobs whose outcome was not stored.
local now, delivery = ARGV[2], ARGV[3]
local stale = {R.OK}
local outcomes = {[JOB.DONE] = {}, [JOB.ERROR] = {}}
local measured, fits, leaving = {}, {}, {}
local batch_id, qpu, project_id
local runs_done, stored = 0, 0
-- Checked before any write: a script is not rolled back.
for i = 5, #ARGV, 5 do
  if not outcomes[ARGV[i]] then
    error('commit_jobs: outcome ' .. ARGV[i] .. ' is not DONE or ERROR')
  end
end
for i = 4, #ARGV, 5 do
  local job_id, outcome, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local h = redis.call('HMGET', K.job(job_id), 'status', 'delivery', 'batch_id', 'qpu',
    'project_id', 'runs', 'atoms', 'duration_ns', 'attempts', 'start_us')
  if not h[1] or h[2] ~= delivery then
    table.insert(stale, job_id)
    table.insert(stale, h[1] or MISSING)
  else
    -- One delivery is one dispatch of one batch to one QPU.
    batch_id, qpu, project_id = h[3], h[4], h[5]
    table.insert(leaving, job_id)
    if h[1] ~= JOB.RUNNING then
      table.insert(stale, job_id)
      table.insert(stale, h[1])
    else
      local seconds = tonumber(ARGV[i + 4])
      if seconds then
        measured[job_id] = {started_us = ARGV[i + 3], seconds = seconds}
      elseif h[10] then
        seconds = seconds_between(h[10], now)
      end
      table.insert(outcomes[outcome], job_id)
      -- What it stores counts against its project (set_jobs_status releases the reservation).
      stored = stored + #payload
      if outcome == JOB.DONE then
        redis.call('SET', K.job_result(job_id), payload)
        -- Shots done, for the batch's progress (`tweezer status`, the dashboard).
        runs_done = runs_done + tonumber(h[6])
        if h[9] == '1' and h[7] and h[8] and seconds then
          table.insert(fits, {atoms = h[7], duration_ns = h[8], seconds = seconds})
        end
      else
        set_job_errors(job_id, payload)
      end
    end
  end
end
if #leaving == 0 then return stale end
redis.call('ZREM', K.qpu_inflight(qpu), unpack(leaving))
add_stored_bytes(project_id, stored)
for outcome, ids in pairs(outcomes) do
  set_jobs_status(batch_id, ids, JOB.RUNNING, outcome, now, measured)
end
if runs_done > 0 then redis.call('HINCRBY', K.batch(batch_id), 'runs_done', runs_done) end
fit_costs(redis.call('HGET', K.batch(batch_id), 'device_type'), fits)
finish_batch_if_complete(batch_id, now)
wake_scheduler()
return stale
