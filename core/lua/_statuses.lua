-- The only code that changes a batch's or a job's status: it checks the move against the
-- transition tables and keeps the status indexes, the batch counters and the queues in step.

-- A job's attempts (core/records.py JobAttempt): a JSON array in its `history` field, times
-- as strings (cjson would round 16-digit integers). Returns the new text.
local function history_begin(raw, entry)
  local history = cjson.decode(raw or '[]')
  table.insert(history, entry)
  return cjson.encode(history)
end

-- The last attempt of `raw` ended with `outcome`; `started_us` (when its worker measured it, a
-- string, or nil) replaces the claim's time. Returns the new text, or nil if nothing changes.
local function history_close(raw, outcome, now, started_us)
  if not raw then return nil end
  local history = cjson.decode(raw)
  local last = history[#history]
  if not last or last['ended_us'] then return nil end
  last['ended_us'] = tostring(now)
  last['outcome'] = outcome
  if started_us then last['started_us'] = started_us end
  return cjson.encode(history)
end

-- Aborts the script with the error core/replies.py turns into InvalidTransition (a 409). The
-- callers check a record's status before they move it, so this guards against a bug, and it
-- comes before any write of the move.
local function raise_transition(entity, id, from, to)
  error({err = TRANSITION_ERROR_PREFIX .. ' ' .. entity .. ' ' .. id .. ' ' .. tostring(from)
    .. ' ' .. to})
end

-- The only code that changes jobs' status: moves `job_ids`, all of `batch_id` and all in status
-- `from`, to `to`. A worker's chunk of jobs moves together: each job costs one read and one
-- write, and the indexes, counters and totals are written once for the whole group.
-- `measured` (optional) maps a job id to what its worker measured of its run: {started_us =
-- string, seconds = number}; else a run lasted from the job's start to `now`.
local function set_jobs_status(batch_id, job_ids, from, to, now, measured)
  local n = #job_ids
  if n == 0 then return end
  if not (JOB_TRANSITIONS[from] or {})[to] then raise_transition('job', job_ids[1], from, to) end
  measured = measured or {}
  local device_type = redis.call('HGET', K.batch(batch_id), 'device_type')
  local terminal = TERMINAL_JOB[to]
  local indexed, run_seconds, inflight = {}, {}, {}
  local unfinished, reserved = {}, {}
  for i, job_id in ipairs(job_ids) do
    local job = K.job(job_id)
    local j = read_record(job, 'job', 'created_us', 'start_us', 'project_id', 'reserved_bytes',
      'qpu', 'history', 'attempts')
    local fields = {'status', to, 'updated_us', now}
    local run = measured[job_id]
    if from == JOB.RUNNING then
      -- The attempt ends (claim_jobs.lua began it); back to PENDING: its worker was lost and
      -- the job is queued again.
      local history = history_close(j.history, to == JOB.PENDING and ATTEMPT.LOST or to, now,
        run and run.started_us)
      if history then table.insert(fields, 'history') table.insert(fields, history) end
      -- A chunk's jobs are claimed together: its first run's start is when it began.
      if run and j.attempts == '1' then
        table.insert(fields, 'start_us') table.insert(fields, run.started_us)
      end
    end
    if terminal then
      table.insert(fields, 'end_us') table.insert(fields, now)
      if to ~= JOB.CANCELED and (run or j.start_us) then
        table.insert(run_seconds, run and run.seconds or seconds_between(j.start_us, now))
      end
      unfinished[j.project_id] = (unfinished[j.project_id] or 0) + 1
      reserved[j.project_id] = (reserved[j.project_id] or 0) + tonumber(j.reserved_bytes or '0')
      -- Dispatched but not claimed: no worker holds it, so it leaves the QPU's in-flight set
      -- now (its late claim is refused: it is no longer PENDING) and the QPU can go to the
      -- next batch.
      if from == JOB.PENDING and j.qpu then
        inflight[j.qpu] = inflight[j.qpu] or {}
        table.insert(inflight[j.qpu], job_id)
      end
    end
    redis.call('HSET', job, unpack(fields))
    indexed[2 * i - 1], indexed[2 * i] = j.created_us, job_id
  end
  call_many('ZREM', K.job_index('status', from), job_ids)
  call_many('ZADD', K.job_index('status', to), indexed)
  redis.call('HINCRBY', K.batch_counts(batch_id), from, -n)
  redis.call('HINCRBY', K.batch_counts(batch_id), to, n)
  move_total('job', device_type, from, to, n)
  if not terminal then return end
  for qpu, ids in pairs(inflight) do call_many('ZREM', K.qpu_inflight(qpu), ids) end
  count('jobs_finished', device_type .. ',' .. to, n)
  observe_all('job_run_seconds', device_type .. ',' .. to, run_seconds)
  if #run_seconds > 0 then
    local slot = K.throughput(math.floor(tonumber(now) / 1000000 / THROUGHPUT_SLOT_S))
    redis.call('INCRBY', slot, #run_seconds)
    redis.call('EXPIRE', slot, THROUGHPUT_KEEP_S)
  end
  for project_id, count_ in pairs(unfinished) do
    redis.call('HINCRBY', K.project_usage(project_id), 'unfinished_jobs', -count_)
    -- Their results are stored (commit_jobs counted them) or never will be.
    add_stored_bytes(project_id, -reserved[project_id])
  end
  -- A finished job restarts the idle clock of an open batch.
  redis.call('HSET', K.batch(batch_id), 'activity_us', now)
end

local function set_job_status(job_id, batch_id, from, to, now)
  set_jobs_status(batch_id, {job_id}, from, to, now)
end

local function set_batch_open(batch_id, is_open, now)
  local batch = K.batch(batch_id)
  local h = read_record(batch, 'batch', 'open', 'created_us', 'project_id')
  local new = is_open and '1' or '0'
  if h.open ~= new then
    redis.call('HSET', batch, 'open', new, 'updated_us', now)
    redis.call('ZREM', K.batch_index('open', h.open), batch_id)
    redis.call('ZADD', K.batch_index('open', new), h.created_us, batch_id)
  end
  if not is_open then
    redis.call('SREM', K.project_open_batches(h.project_id), batch_id)
  end
end

-- A finished batch is also closed: whether a batch takes jobs is its `open` flag alone.
local function set_batch_status(batch_id, from, to, now)
  if not (BATCH_TRANSITIONS[from] or {})[to] then raise_transition('batch', batch_id, from, to) end
  local batch = K.batch(batch_id)
  local b = read_record(batch, 'batch', 'created_us', 'device_type', 'queue_priority',
    'project_id')
  redis.call('HSET', batch, 'status', to, 'updated_us', now)
  redis.call('ZREM', K.batch_index('status', from), batch_id)
  redis.call('ZADD', K.batch_index('status', to), b.created_us, batch_id)
  move_total('batch', b.device_type, from, to)
  move_project_count(b.project_id, from, to)
  if from == BATCH.PENDING then
    dequeue_batch(batch_id, b.device_type, b.queue_priority, b.project_id)
  end
  if to == BATCH.RUNNING then
    redis.call('HSET', batch, 'start_us', now, 'activity_us', now)
    observe('batch_wait_seconds', b.queue_priority, seconds_between(b.created_us, now))
  end
  if TERMINAL_BATCH[to] then
    observe('batch_turnaround_seconds', b.device_type .. ',' .. to,
      seconds_between(b.created_us, now))
    set_batch_open(batch_id, false, now)
    redis.call('HSET', batch, 'end_us', now)
    redis.call('DEL', K.batch_pending(batch_id))
    redis.call('ZADD', K.retention(), now, batch_id)
    -- Its end is announced to its webhook, at least once: the delivery is due now.
    if redis.call('HEXISTS', batch, 'webhook') == 1 then
      redis.call('ZADD', K.webhooks(), now, batch_id)
      redis.call('HSET', batch, 'webhook_state', WEBHOOK.PENDING)
    end
    wake_scheduler()
  end
end

-- Cancels every job of the batch that is not terminal yet (RUNNING ones too: their results
-- will be refused at commit), each status's jobs as one group.
local function cancel_unfinished_jobs(batch_id, now)
  local by_status = {}
  for _, job_id in ipairs(redis.call('ZRANGE', K.batch_jobs(batch_id), 0, -1)) do
    local job_status = redis.call('HGET', K.job(job_id), 'status')
    if not TERMINAL_JOB[job_status] then
      by_status[job_status] = by_status[job_status] or {}
      table.insert(by_status[job_status], job_id)
    end
  end
  for job_status, ids in pairs(by_status) do
    set_jobs_status(batch_id, ids, job_status, JOB.CANCELED, now)
  end
end

-- Jobs of the batch not terminal yet (waiting, dispatched or running).
local function active_jobs(batch_id)
  local n = 0
  for _, status in ipairs(JOB_STATUSES) do
    if not TERMINAL_JOB[status] then
      n = n + tonumber(redis.call('HGET', K.batch_counts(batch_id), status) or '0')
    end
  end
  return n
end

-- A closed batch whose jobs are all terminal is DONE, even if some jobs ended ERROR.
local function finish_batch_if_complete(batch_id, now)
  local b = read_record(K.batch(batch_id), 'batch', 'status', 'open')
  if not TERMINAL_BATCH[b.status] and b.open == '0' and active_jobs(batch_id) == 0 then
    set_batch_status(batch_id, b.status, BATCH.DONE, now)
  end
end

-- Adds a worker's notes on a run (a JSON array of strings) to the job's warnings.
local function add_job_warnings(job_id, notes)
  local job = K.job(job_id)
  local raw = redis.call('HGET', job, 'warnings')
  local warnings = raw and cjson.decode(raw) or {}
  for _, note in ipairs(cjson.decode(notes)) do table.insert(warnings, note) end
  redis.call('HSET', job, 'warnings', cjson.encode(warnings))
end

-- Records a job's errors (a JSON array of messages) and moves it to the `errors` index.
local function set_job_errors(job_id, errors)
  local job = K.job(job_id)
  redis.call('HSET', job, 'errors', errors)
  redis.call('ZREM', K.job_index('errors', '0'), job_id)
  redis.call('ZADD', K.job_index('errors', '1'), redis.call('HGET', job, 'created_us'), job_id)
end
