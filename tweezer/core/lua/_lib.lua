-- Shared by every script (core/scripts.py prepends it, after NS, K.*, AUDIT_FIELDS, the status
-- names and tables JOB, BATCH, DEVICE, TERMINAL_*, *_TRANSITIONS, and the reply codes R.*).
-- The only code that changes a batch's or a job's status: it checks the move against the
-- transition table and keeps the status indexes, the batch counters and the queues in step.

-- The status a stale worker's reply names for a job that no longer exists.
local MISSING = 'MISSING'

-- What a batch's and a job's index entries and hash overhead take in Redis beyond their field
-- texts: an estimate (measured: README, "Bounded storage") counted in stored_bytes.
local BATCH_OVERHEAD_BYTES = 1024
local JOB_OVERHEAD_BYTES = 1536

-- Integers as decimal text. Lua numbers are doubles and tostring() writes 16-digit
-- microsecond timestamps in scientific notation, which nothing downstream can parse.
local function int(n)
  return string.format('%d', n)
end

-- A deadline in ms from `now` in µs (as received in ARGV) plus `ms`.
local function deadline_ms(now, ms)
  return int(math.floor(tonumber(now) / 1000) + ms)
end

local function wake_scheduler()
  redis.call('LPUSH', K.wakeup(), '1')
  redis.call('LTRIM', K.wakeup(), 0, 0)
end

-- Next creation timestamp (µs): never below `now`, always above the last one handed out, so
-- timestamps are unique and their order is creation order across the whole cluster.
local function next_created(now)
  local last = tonumber(redis.call('GET', K.clock()) or '0')
  local ts = int(math.max(tonumber(now), last + 1))
  redis.call('SET', K.clock(), ts)
  return ts
end

-- The waiting set the scheduling policy chooses from (scheduler/reader.py reads it): a
-- priority level's queue holds the projects with batches waiting there, and each project's
-- own queue holds its batches in creation order.
local function enqueue_batch(batch_id, device_type, priority, project_id, created)
  redis.call('ZADD', K.project_queue(device_type, priority, project_id), created, batch_id)
  redis.call('ZADD', K.queue(device_type, priority), 'NX', 0, project_id)
end

local function dequeue_batch(batch_id, device_type, priority, project_id)
  local own = K.project_queue(device_type, priority, project_id)
  redis.call('ZREM', own, batch_id)
  if redis.call('ZCARD', own) == 0 then
    redis.call('ZREM', K.queue(device_type, priority), project_id)
  end
end

-- Adds `held_s` QPU seconds to a project's usage of a device type, after decaying what was
-- counted before by `half_life_s` (halved every half-life: scheduling/policies.py decayed() is
-- the same rule, which the snapshot applies up to its `now`).
local function add_usage(device_type, project_id, held_s, now, half_life_s)
  local value = tonumber(redis.call('HGET', K.device_usage(device_type), project_id) or '0')
  local since = tonumber(redis.call('HGET', K.device_usage_at(device_type), project_id) or now)
  local elapsed_s = (tonumber(now) - since) / 1000000
  if elapsed_s > 0 then value = value * 2 ^ (-elapsed_s / half_life_s) end
  redis.call('HSET', K.device_usage(device_type), project_id, string.format('%.6f', value + held_s))
  redis.call('HSET', K.device_usage_at(device_type), project_id, now)
end

-- Counts `bytes` (negative: freed) against the project's storage. Through int(): a Lua -0 is
-- written "-0", which HINCRBY refuses.
local function add_stored_bytes(project_id, bytes)
  redis.call('HINCRBY', K.project_usage(project_id), 'stored_bytes', int(bytes))
end

-- What happened, counted in the step that made it happen (core/counters.py): a counter, a
-- histogram observation, and the current number of batches and jobs per device type and status.
local function count(name, labels, n)
  redis.call('HINCRBY', K.counters(), name .. ':' .. labels, n or 1)
end

-- Observations of one histogram under one label set, written once per bucket they fall in.
local function observe_all(name, labels, values)
  if #values == 0 then return end
  local bounds = HISTOGRAMS[name]
  local slots, sum = {}, 0
  for _, seconds in ipairs(values) do
    local slot = #bounds + 1
    for i, bound in ipairs(bounds) do
      if seconds <= bound then slot = i break end
    end
    slots[slot] = (slots[slot] or 0) + 1
    sum = sum + seconds
  end
  local field = name .. ':' .. labels .. ':'
  for slot, n in pairs(slots) do
    redis.call('HINCRBY', K.counters(), field .. slot, n)
  end
  redis.call('HINCRBYFLOAT', K.counters(), field .. 'sum', string.format('%.6f', sum))
end

local function observe(name, labels, seconds)
  observe_all(name, labels, {seconds})
end

local function move_total(kind, device_type, from, to, n)
  n = n or 1
  if from then redis.call('HINCRBY', K.totals(), kind .. ':' .. device_type .. ':' .. from, -n) end
  redis.call('HINCRBY', K.totals(), kind .. ':' .. device_type .. ':' .. to, n)
end

-- A project's batches per status: the exact total of a list filtered by project and status.
local function move_project_count(project_id, from, to)
  local counts = K.project_batch_counts(project_id)
  if from then redis.call('HINCRBY', counts, from, -1) end
  redis.call('HINCRBY', counts, to, 1)
end

local function seconds_between(from_us, to_us)
  return (tonumber(to_us) - tonumber(from_us)) / 1000000
end

-- Runs one command on `key` with `args` appended, in slices: Lua's unpack() has a limit, and a
-- group (a chunk of jobs, a cancelled batch) may be large.
local function call_many(command, key, args)
  local slice = 1000
  for i = 1, #args, slice do
    redis.call(command, key, unpack(args, i, math.min(i + slice - 1, #args)))
  end
end

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
    local j = redis.call('HMGET', job, 'created_us', 'start_us', 'project_id', 'reserved_bytes',
      'qpu', 'history', 'attempts')
    local fields = {'status', to, 'updated_us', now}
    local run = measured[job_id]
    if from == JOB.RUNNING then
      -- The attempt ends (claim_jobs.lua began it); back to PENDING: its worker was lost and
      -- the job is queued again.
      local history = history_close(j[6], to == JOB.PENDING and 'LOST' or to, now,
        run and run.started_us)
      if history then table.insert(fields, 'history') table.insert(fields, history) end
      -- A chunk's jobs are claimed together: its first run's start is when it began.
      if run and j[7] == '1' then
        table.insert(fields, 'start_us') table.insert(fields, run.started_us)
      end
    end
    if terminal then
      table.insert(fields, 'end_us') table.insert(fields, now)
      if to ~= JOB.CANCELED and (run or j[2]) then
        table.insert(run_seconds, run and run.seconds or seconds_between(j[2], now))
      end
      unfinished[j[3]] = (unfinished[j[3]] or 0) + 1
      reserved[j[3]] = (reserved[j[3]] or 0) + tonumber(j[4] or '0')
      -- Dispatched but not claimed: no worker holds it, so it leaves the QPU's in-flight set
      -- now (its late claim is refused: it is no longer PENDING) and the QPU can go to the
      -- next batch.
      if from == JOB.PENDING and j[5] then
        inflight[j[5]] = inflight[j[5]] or {}
        table.insert(inflight[j[5]], job_id)
      end
    end
    redis.call('HSET', job, unpack(fields))
    indexed[2 * i - 1], indexed[2 * i] = j[1], job_id
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
  local h = redis.call('HMGET', batch, 'open', 'created_us', 'project_id')
  local new = is_open and '1' or '0'
  if h[1] ~= new then
    redis.call('HSET', batch, 'open', new, 'updated_us', now)
    redis.call('ZREM', K.batch_index('open', h[1]), batch_id)
    redis.call('ZADD', K.batch_index('open', new), h[2], batch_id)
  end
  if not is_open then
    redis.call('SREM', K.project_open_batches(h[3]), batch_id)
  end
end

-- A finished batch is also closed: whether a batch takes jobs is its `open` flag alone.
local function set_batch_status(batch_id, from, to, now)
  if not (BATCH_TRANSITIONS[from] or {})[to] then raise_transition('batch', batch_id, from, to) end
  local batch = K.batch(batch_id)
  local b = redis.call('HMGET', batch, 'created_us', 'device_type', 'queue_priority', 'project_id')
  redis.call('HSET', batch, 'status', to, 'updated_us', now)
  redis.call('ZREM', K.batch_index('status', from), batch_id)
  redis.call('ZADD', K.batch_index('status', to), b[1], batch_id)
  move_total('batch', b[2], from, to)
  move_project_count(b[4], from, to)
  if from == BATCH.PENDING then
    dequeue_batch(batch_id, b[2], b[3], b[4])
  end
  if to == BATCH.RUNNING then
    redis.call('HSET', batch, 'start_us', now, 'activity_us', now)
    observe('batch_wait_seconds', b[3], seconds_between(b[1], now))
  end
  if TERMINAL_BATCH[to] then
    observe('batch_turnaround_seconds', b[2] .. ',' .. to, seconds_between(b[1], now))
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
  local b = redis.call('HMGET', K.batch(batch_id), 'status', 'open')
  if not TERMINAL_BATCH[b[1]] and b[2] == '0' and active_jobs(batch_id) == 0 then
    set_batch_status(batch_id, b[1], BATCH.DONE, now)
  end
end

-- Records a job's errors (a JSON array of messages) and moves it to the `errors` index.
local function set_job_errors(job_id, errors)
  local job = K.job(job_id)
  redis.call('HSET', job, 'errors', errors)
  redis.call('ZREM', K.job_index('errors', '0'), job_id)
  redis.call('ZADD', K.job_index('errors', '1'), redis.call('HGET', job, 'created_us'), job_id)
end

-- Folds finished jobs' run times into their device type's cost fit (core/costs.py): seconds per
-- job per (1 + µs of pulse), by atom count, an exponentially weighted mean. `runs` lists
-- {atoms = string, duration_ns = string, seconds = number} of first attempts only (a retried
-- job's run includes its lost attempts).
local COST_FIT_WEIGHT = 0.2
local function fit_costs(device_type, runs)
  if #runs == 0 then return end
  local key = K.device_costs(device_type)
  local fitted = {}
  for _, run in ipairs(runs) do
    local per = run.seconds / (1 + tonumber(run.duration_ns) / 1000)
    local old = fitted[run.atoms]
    if old == nil then
      local raw = redis.call('HGET', key, run.atoms)
      old = raw and tonumber(raw)
    end
    if old then per = (1 - COST_FIT_WEIGHT) * old + COST_FIT_WEIGHT * per end
    fitted[run.atoms] = per
  end
  for atoms, per in pairs(fitted) do
    redis.call('HSET', key, atoms, string.format('%.6f', per))
  end
end

-- Bytes of a record's field names and values (a table of strings).
local function fields_bytes(fields)
  local n = 0
  for name, value in pairs(fields) do n = n + #name + #value end
  return n
end

-- What `jobs` (field tables) will count against their project's storage: their records and
-- the reservations for their results.
local function jobs_bytes(jobs)
  local n = 0
  for _, fields in ipairs(jobs) do
    n = n + fields_bytes(fields) + JOB_OVERHEAD_BYTES + tonumber(fields['reserved_bytes'] or '0')
  end
  return n
end

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

-- A device type's effective status: the one an admin set, or CALIBRATING inside one of its
-- calibration windows. Only UP lets a batch start or a job be dispatched.
local function device_status(device_type, now)
  local status = redis.call('HGET', K.device(device_type), 'status') or DEVICE.UP
  if status ~= DEVICE.UP then return status end
  local n = tonumber(now)
  for _, window in ipairs(redis.call('ZRANGEBYSCORE', K.device_calibrations(device_type), '-inf', now)) do
    if calibration_end(window) > n then return DEVICE.CALIBRATING end
  end
  return DEVICE.UP
end

-- Idempotency-Key: the first commit under a key records what it created, in the same script,
-- so a retried POST finds it instead of creating again. `key` is '' when the request had none.
-- The only reader and writer of the record (the API's early check is idempotency_check.lua).
local function idempotent_replay(key, fingerprint)
  if key == '' then return nil end
  local seen = redis.call('GET', key)
  if not seen then return nil end
  local record = cjson.decode(seen)
  if record['fingerprint'] ~= fingerprint then return {R.KEY_REUSED} end
  return {R.REPLAY, record['batch_id']}
end

local function remember_idempotent(key, fingerprint, batch_id, ttl_ms)
  if key == '' then return end
  local record = cjson.encode({fingerprint = fingerprint, batch_id = batch_id})
  redis.call('SET', key, record, 'PX', ttl_ms)
end

-- The keys of a QPU that the scheduler's scripts receive as KEYS (core/qpu.py, in this order):
-- its lease, its fencing epoch, the batch it serves, and its in-flight jobs.
local function qpu_keys()
  return {lease = KEYS[1], epoch = KEYS[2], batch = KEYS[3], inflight = KEYS[4]}
end

-- True when `token` holds the QPU's lease at fencing `epoch`: the guard of every scheduler
-- write, so a scheduler that was paused past its lease writes nothing.
local function holds_lease(q, token, epoch)
  return redis.call('GET', q.lease) == token and redis.call('GET', q.epoch) == tostring(epoch)
end

-- Quotas counted at commit, so concurrent requests cannot pass them together (the static ones,
-- runs per job and device types, are checked in Python: core/quotas.py). Returns
-- {R.QUOTA, project id, name, limit, in use[, needed]} when the project may not take `new_jobs` more
-- unfinished jobs, one more open batch when `opens`, or `new_bytes` more stored bytes (its own
-- max_stored_bytes, else `default_max_bytes`; '0': no limit); nil when it may.
local function quota_refusal(project_id, new_jobs, opens, new_bytes, default_max_bytes)
  local limits = redis.call('HMGET', K.project(project_id), 'max_queued_jobs', 'max_open_batches',
    'max_stored_bytes')
  if limits[1] and new_jobs > 0 then
    local used = tonumber(redis.call('HGET', K.project_usage(project_id), 'unfinished_jobs') or '0')
    if used + new_jobs > tonumber(limits[1]) then
      return {R.QUOTA, project_id, 'max_queued_jobs', limits[1], int(used)}
    end
  end
  if limits[2] and opens then
    local used = redis.call('SCARD', K.project_open_batches(project_id))
    if used >= tonumber(limits[2]) then
      return {R.QUOTA, project_id, 'max_open_batches', limits[2], int(used)}
    end
  end
  local max_bytes = limits[3] or (default_max_bytes ~= '0' and default_max_bytes) or nil
  if max_bytes then
    local used = tonumber(redis.call('HGET', K.project_usage(project_id), 'stored_bytes') or '0')
    if used + new_bytes > tonumber(max_bytes) then
      return {R.QUOTA, project_id, 'max_stored_bytes', max_bytes, int(used), int(new_bytes)}
    end
  end
  return nil
end

-- Appends to the audit log, in the same script as the change it records. `entry` is the JSON
-- of core/audit.py's Audit.fields(); the script fills in when, the project and the batch.
local function audit(entry, project_id, batch_id, now)
  local e = cjson.decode(entry)
  e['at'], e['project_id'], e['batch_id'] = now, project_id, batch_id
  local args = {'XADD', K.audit(), 'MAXLEN', '~', AUDIT_RETAINED, '*'}
  for _, name in ipairs(AUDIT_FIELDS) do
    table.insert(args, name)
    table.insert(args, e[name])
  end
  redis.call(unpack(args))
end
