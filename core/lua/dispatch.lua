-- Hands the next jobs of the QPU's batch, in creation order, to its workers: each gets a fresh
-- delivery id (the fence a worker's claim and commit are checked against) and an in-flight
-- deadline by which a worker must claim it.
-- KEYS the QPU's lease, epoch, batch and in-flight keys (qpu_keys() in _lib.lua)
-- ARGV[2] now (µs)
-- ARGV[3] QPU name
-- ARGV[4] token
-- ARGV[5] epoch
-- ARGV[6] capacity: most jobs in flight at once on this QPU
-- ARGV[7] dispatch timeout (ms)
-- Also reads the batch and writes its jobs (K.*).
-- Returns {R.OK, batch id, job id, delivery id, ...} | {R.FENCED} | {R.NOTHING}
--       | {R.PAUSED, device status}.
-- Nothing is dispatched while the device is not UP: the batch pauses, its jobs wait.
local now, qpu, token, epoch = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local capacity, timeout_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
local q = qpu_keys()
if not holds_lease(q, token, epoch) then return {R.FENCED} end
local batch_id = redis.call('GET', q.batch)
if not batch_id or redis.call('HGET', K.batch(batch_id), 'status') ~= BATCH.RUNNING then
  return {R.NOTHING}
end
local status = device_status(redis.call('HGET', K.batch(batch_id), 'device_type'), now)
if status ~= DEVICE.UP then return {R.PAUSED, status} end
local out = {R.OK, batch_id}
local deadline = deadline_ms(now, timeout_ms)
while redis.call('ZCARD', q.inflight) < capacity do
  local job_id = redis.call('LPOP', K.batch_pending(batch_id))
  if not job_id then break end
  if redis.call('HGET', K.job(job_id), 'status') == JOB.PENDING then
    local delivery = redis.call('INCR', K.deliveries())
    redis.call('HSET', K.job(job_id), 'delivery', delivery, 'epoch', epoch, 'qpu', qpu)
    redis.call('ZADD', q.inflight, deadline, job_id)
    table.insert(out, job_id)
    table.insert(out, tostring(delivery))
  end
end
return out
