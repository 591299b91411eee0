-- Stores the outcomes of jobs of one delivery (a worker's chunk, or the part of it that ran
-- since its last commit), each only if the delivery still owns the RUNNING job: a stale
-- worker's, or a job cancelled meanwhile, stores nothing. Either way a job whose current
-- delivery this is leaves the QPU's in-flight set.
-- KEYS the jobs
-- A.now: µs
-- A.delivery: the delivery id
-- A.outcomes: six per job (COMMIT_FIELDS): job id; outcome, DONE or ERROR; payload, the
--             results document (DONE) or the errors as a JSON array of strings (ERROR); when
--             its run began on the worker (µs) and how long it ran (s), or '' and '': from its
--             claim to now; the worker's notes on the run, a JSON array of strings or '',
--             added to the job's warnings
-- Also writes the results, the jobs' indexes, their batch, their QPU's in-flight set and their
-- device type's cost fit (K.*).
-- Returns {R.OK, job id, status or 'MISSING', ...}: the jobs whose outcome was not stored.
local now, delivery = A.now, A.delivery
local commits = {}
for i = 1, #A.outcomes, 6 do
  local o = A.outcomes
  table.insert(commits, {job_id = o[i], outcome = o[i + 1], payload = o[i + 2],
    started_us = o[i + 3], seconds = o[i + 4], warnings = o[i + 5]})
end
local stale = {R.OK}
local outcomes = {[JOB.DONE] = {}, [JOB.ERROR] = {}}
local measured, fits, leaving = {}, {}, {}
local batch_id, qpu, project_id
local runs_done, stored = 0, 0
-- Checked before any write: a script is not rolled back.
for _, c in ipairs(commits) do
  if not outcomes[c.outcome] then
    error('commit_jobs: outcome ' .. c.outcome .. ' is not DONE or ERROR')
  end
end
for _, c in ipairs(commits) do
  local job_id, outcome, payload = c.job_id, c.outcome, c.payload
  local h = read_record(K.job(job_id), 'job', 'status', 'delivery', 'batch_id', 'qpu',
    'project_id', 'runs', 'atoms', 'duration_ns', 'attempts', 'start_us', 'cost_scale')
  if not h.status or h.delivery ~= delivery then
    table.insert(stale, job_id)
    table.insert(stale, h.status or MISSING)
  else
    -- One delivery is one dispatch of one batch to one QPU.
    batch_id, qpu, project_id = h.batch_id, h.qpu, h.project_id
    table.insert(leaving, job_id)
    if h.status ~= JOB.RUNNING then
      table.insert(stale, job_id)
      table.insert(stale, h.status)
    else
      local seconds = tonumber(c.seconds)
      if seconds then
        measured[job_id] = {started_us = c.started_us, seconds = seconds}
      elseif h.start_us then
        seconds = seconds_between(h.start_us, now)
      end
      table.insert(outcomes[outcome], job_id)
      if c.warnings ~= '' then add_job_warnings(job_id, c.warnings) end
      -- What it stores counts against its project (set_jobs_status releases the reservation).
      stored = stored + #payload
      if outcome == JOB.DONE then
        redis.call('SET', K.job_result(job_id), payload)
        -- Shots done, for the batch's progress (`tweezer status`, the dashboard).
        runs_done = runs_done + tonumber(h.runs)
        if h.attempts == '1' and h.atoms and h.duration_ns and seconds then
          -- At its engine's default settings (core/engines.py cost_scale).
          local scale = tonumber(h.cost_scale) or 1
          table.insert(fits, {atoms = h.atoms, duration_ns = h.duration_ns,
            seconds = seconds / scale})
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
