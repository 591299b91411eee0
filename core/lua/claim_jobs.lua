-- A worker claims the jobs of one delivery (a chunk of its batch's jobs, dispatch.lua): each job
-- still PENDING under this delivery moves to RUNNING and begins an attempt; the others (a
-- redelivered message, a superseded dispatch, a job cancelled meanwhile) are not claimed. A
-- worker whose claim's reply was lost (a dropped connection) claims again: the jobs it already
-- holds under this delivery are its own again, without a new attempt.
-- KEYS the jobs
-- A.now: µs
-- A.delivery: the delivery id
-- A.ttl_ms: the heartbeat's TTL
-- A.worker: the worker claiming them (shown in the jobs' history)
-- A.job_ids: the job ids, in the order they will run
-- Also writes the jobs' status indexes and their QPU's in-flight set, and reads their batch
-- (K.*).
-- Returns {R.OK, document}: JSON of what running them needs (core/replies.py decode_claimed):
-- the claimed jobs' inputs, the batch's, and each sequence they use; and the unclaimed jobs
-- with their status (or MISSING).
local now, delivery, ttl_ms, worker = A.now, A.delivery, tonumber(A.ttl_ms), A.worker
local claimed, stale, ids, begun = {}, {}, {}, {}
local batch_id, qpu

-- The job is RUNNING under this delivery, in an attempt this worker (named: '' is nobody)
-- began and has not ended.
local function held_by_worker(h)
  if worker == '' or h.status ~= JOB.RUNNING or h.delivery ~= delivery or not h.history then
    return false
  end
  local history = cjson.decode(h.history)
  local last = history[#history]
  return last ~= nil and last['worker'] == worker and last['ended_us'] == nil
end

for _, job_id in ipairs(A.job_ids) do
  local h = read_record(K.job(job_id), 'job', 'status', 'delivery', 'batch_id', 'qpu',
    'attempts', 'history', 'start_us', 'runs', 'variables', 'sequence_sha', 'sequence', 'atoms',
    'qpu_s')
  local claim = h.status == JOB.PENDING and h.delivery == delivery
  if not (claim or held_by_worker(h)) then
    table.insert(stale, {job_id, h.status or MISSING})
  else
    -- One delivery is one dispatch of one batch to one QPU.
    batch_id, qpu = h.batch_id, h.qpu
    local attempts = tonumber(h.attempts or '0')
    if claim then
      attempts = attempts + 1
      table.insert(ids, job_id)
      begun[job_id] = {attempts = attempts, history = h.history, start_us = h.start_us}
    end
    table.insert(claimed, {id = job_id, attempt = attempts, runs = h.runs,
      variables = h.variables or '', sequence_sha = h.sequence_sha or '',
      sequence = h.sequence or '', atoms = h.atoms or '1', qpu_s = h.qpu_s or '0'})
  end
end
local out = {claimed = claimed, stale = stale, batch = {}, sequences = {}}
if #claimed == 0 then return {R.OK, cjson.encode(out)} end
set_jobs_status(batch_id, ids, JOB.PENDING, JOB.RUNNING, now)
local deadlines = {}
for i, job_id in ipairs(ids) do
  local b = begun[job_id]
  local entry = {attempt = b.attempts, qpu = qpu, worker = worker, started_us = tostring(now)}
  local fields = {'attempts', b.attempts, 'history', history_begin(b.history, entry)}
  if not b.start_us then table.insert(fields, 'start_us') table.insert(fields, now) end
  redis.call('HSET', K.job(job_id), unpack(fields))
  deadlines[2 * i - 1], deadlines[2 * i] = deadline_ms(now, ttl_ms), job_id
end
-- From the claim's deadline to the heartbeat's (a chunk is at most MAX_CHUNK_JOBS jobs).
if #ids > 0 then redis.call('ZADD', K.qpu_inflight(qpu), 'XX', unpack(deadlines)) end
local batch = read_record(K.batch(batch_id), 'batch', 'sequence_builder', 'configuration',
  'backend_configuration')
out.batch = {sequence_builder = batch.sequence_builder or '',
  configuration = batch.configuration or '',
  backend_configuration = batch.backend_configuration or ''}
local shas, seen = {}, {}
for _, job in ipairs(claimed) do
  if job.sequence_sha ~= '' and not seen[job.sequence_sha] then
    seen[job.sequence_sha] = true
    table.insert(shas, job.sequence_sha)
  end
end
if #shas > 0 then
  local texts = redis.call('HMGET', K.batch_sequences(batch_id), unpack(shas))
  for i, sha in ipairs(shas) do out.sequences[sha] = texts[i] or '' end
end
return {R.OK, cjson.encode(out)}
