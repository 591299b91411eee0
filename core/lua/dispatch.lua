-- Hands the next jobs of the QPU's batch, in creation order, to its workers, in chunks: one
-- message (one delivery id, the fence a worker's claim, heartbeats and commit are checked
-- against) carries as many jobs as are predicted to take `chunk_s` together, by the first
-- waiting job's prediction, at most `max_chunk`, and no more than a (2 x pool)-th of what waits,
-- so the pool's processes finish together. A job that ran before (its worker was lost) goes
-- alone: a job that kills its worker takes no other job down with it twice. Each job gets an
-- in-flight deadline by which a worker must claim it; the QPU holds at most `pool` chunks in
-- flight, and one more waiting when jobs are chunked (the worker starts it as soon as it
-- commits, instead of waiting for the next dispatch).
-- KEYS the QPU's lease, epoch, batch and in-flight keys (qpu_keys() in _queues.lua)
-- A.now: now (µs)
-- A.qpu: QPU name
-- A.token: token
-- A.epoch: epoch
-- A.pool: jobs the QPU runs at once
-- A.timeout_ms: dispatch timeout (ms)
-- A.chunk_s: predicted seconds of work per message (0: one job per message)
-- A.max_chunk: most jobs per message
-- Also reads the batch and writes its jobs (K.*).
-- Returns {R.OK, batch id, delivery id, job count, job id..., delivery id, job count, ...}
--       | {R.FENCED} | {R.NOTHING} | {R.PAUSED, device status}.
-- Nothing is dispatched while the device is not UP: the batch pauses, its jobs wait.
local now, qpu, token, epoch = A.now, A.qpu, A.token, A.epoch
local pool, timeout_ms = tonumber(A.pool), tonumber(A.timeout_ms)
local chunk_s, max_chunk = tonumber(A.chunk_s), tonumber(A.max_chunk)
local q = qpu_keys()
if not holds_lease(q, token, epoch) then return {R.FENCED} end
local batch_id = redis.call('GET', q.batch)
if not batch_id or redis.call('HGET', K.batch(batch_id), 'status') ~= BATCH.RUNNING then
  return {R.NOTHING}
end
local status = device_status(redis.call('HGET', K.batch(batch_id), 'device_type'), now)
if status ~= DEVICE.UP then return {R.PAUSED, status} end
local out = {R.OK, batch_id}
local pending = K.batch_pending(batch_id)
local waiting = redis.call('LLEN', pending)
if waiting == 0 then return out end
-- A job's qpu_s is its predicted seconds shared among the pool (core/costs.py).
local head = redis.call('LINDEX', pending, 0)
local head_s = tonumber(redis.call('HGET', K.job(head), 'qpu_s') or '0') * pool
local full = 1
if chunk_s > 0 then
  full = max_chunk
  if head_s > 0 then full = math.max(1, math.min(max_chunk, math.floor(chunk_s / head_s))) end
end
local capacity = pool * full + (full > 1 and full or 0)
local room = capacity - redis.call('ZCARD', q.inflight)
local deadline = deadline_ms(now, timeout_ms)

local function send(ids)
  if #ids == 0 then return end
  local delivery = redis.call('INCR', K.deliveries())
  local deadlines = {}
  for i, job_id in ipairs(ids) do
    redis.call('HSET', K.job(job_id), 'delivery', delivery, 'epoch', epoch, 'qpu', qpu)
    deadlines[2 * i - 1], deadlines[2 * i] = deadline, job_id
  end
  redis.call('ZADD', q.inflight, unpack(deadlines))
  table.insert(out, tostring(delivery))
  table.insert(out, tostring(#ids))
  for _, job_id in ipairs(ids) do table.insert(out, job_id) end
end

while waiting > 0 do
  local size = math.max(1, math.min(full, math.ceil(waiting / (2 * pool))))
  if room < size then break end
  local popped = redis.call('LPOP', pending, size)
  if not popped then break end
  waiting, room = waiting - #popped, room - #popped
  local chunk = {}
  for _, job_id in ipairs(popped) do
    local h = read_record(K.job(job_id), 'job', 'status', 'attempts')
    if h.status == JOB.PENDING then
      if tonumber(h.attempts or '0') > 0 then send({job_id}) else table.insert(chunk, job_id) end
    end
  end
  send(chunk)
end
return out
