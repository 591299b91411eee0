-- A batch's inputs: its sequences, stored once each, and its jobs' records and indexes.

-- Of `sequences` (sha -> text), the ones the batch does not hold yet, and their bytes.
local function new_sequences(batch_id, sequences)
  local new, bytes = {}, 0
  for sha, text in pairs(sequences) do
    if redis.call('HEXISTS', K.batch_sequences(batch_id), sha) == 0 then
      new[sha] = text
      bytes = bytes + #sha + #text
    end
  end
  return new, bytes
end

-- Stores a batch's new sequences (from new_sequences) and counts them as its inputs, which
-- purge_inputs.lua drops after the retention period.
local function store_sequences(batch_id, new, bytes)
  for sha, text in pairs(new) do
    redis.call('HSET', K.batch_sequences(batch_id), sha, text)
  end
  redis.call('HINCRBY', K.batch(batch_id), 'input_bytes', bytes)
end

-- Creates `jobs` (a list of field tables, from core/records.py Job.creation_fields) in
-- `batch_id`, all of one principal and PENDING; returns their creation timestamps. One write
-- per job (its record); the indexes, the queue, the counters and the batch's totals are
-- written once for all of them.
local function create_jobs(jobs, batch_id, now)
  local n = #jobs
  if n == 0 then return {} end
  local batch = K.batch(batch_id)
  local device_type = redis.call('HGET', batch, 'device_type')
  local status, project_id, user_id = jobs[1]['status'], jobs[1]['project_id'], jobs[1]['user_id']
  -- Timestamps as next_created() hands them out, one after another.
  local first = tonumber(next_created(now))
  local stamps, ids, stamped, by_runs = {}, {}, {}, {}
  local runs_total, predicted = 0, 0
  for i, fields in ipairs(jobs) do
    local ts = int(first + i - 1)
    local job_id = fields['id']
    local record = {}
    for name, value in pairs(fields) do
      table.insert(record, name)
      table.insert(record, value)
    end
    -- After the fields: these are the store's, not the caller's.
    for _, item in ipairs({'created_us', ts, 'updated_us', ts, 'device_type', device_type}) do
      table.insert(record, item)
    end
    redis.call('HSET', K.job(job_id), unpack(record))
    stamps[i], ids[i] = ts, job_id
    stamped[2 * i - 1], stamped[2 * i] = ts, job_id
    by_runs[2 * i - 1], by_runs[2 * i] = fields['runs'], job_id
    runs_total = runs_total + tonumber(fields['runs'])
    predicted = predicted + tonumber(fields['qpu_s'] or '0')
  end
  if n > 1 then redis.call('SET', K.clock(), stamps[n]) end
  move_total('job', device_type, nil, status, n)
  call_many('ZADD', K.batch_jobs(batch_id), stamped)
  call_many('RPUSH', K.batch_pending(batch_id), ids)
  call_many('ZADD', K.all_jobs(), stamped)
  call_many('ZADD', K.job_index('project_id', project_id), stamped)
  call_many('ZADD', K.job_index('user_id', user_id), stamped)
  call_many('ZADD', K.job_index('status', status), stamped)
  call_many('ZADD', K.job_index('errors', '0'), stamped)
  call_many('ZADD', K.jobs_by_runs(), by_runs)
  redis.call('HINCRBY', K.batch_counts(batch_id), status, n)
  redis.call('HINCRBY', K.project_usage(project_id), 'unfinished_jobs', n)
  -- What the scheduling policy reads of a waiting batch without reading its jobs.
  redis.call('HINCRBY', batch, 'jobs_total', n)
  redis.call('HINCRBY', batch, 'runs_total', runs_total)
  if predicted > 0 then
    redis.call('HINCRBYFLOAT', batch, 'predicted_qpu_s', string.format('%.17g', predicted))
  end
  return stamps
end
