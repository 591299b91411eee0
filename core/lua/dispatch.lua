-- Hands the next jobs of the QPU's batch, in creation order, to its workers: each gets a fresh
-- delivery id (the fence a worker's claim and commit are checked against) and an in-flight
-- deadline by which a worker must claim it.
-- ARGV[2] now (µs)
-- ARGV[3] QPU name
-- ARGV[4] token
-- ARGV[5] epoch
-- ARGV[6] capacity: most jobs in flight at once on this QPU
-- ARGV[7] dispatch timeout (ms)
-- Returns {'ok', batch id, job id, delivery, ...} | {'fenced'} | {'none'} | {'paused', status}.
-- Nothing is dispatched while the device is not UP: the batch pauses, its jobs wait.
local now, qpu, token, epoch = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local capacity, timeout_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
if not holds_lease(qpu, token, epoch) then return {'fenced'} end
local batch_id = redis.call('GET', K.qpu_batch(qpu))
if not batch_id or redis.call('HGET', K.batch(batch_id), 'status') ~= 'RUNNING' then
  return {'none'}
end
local status = device_status(redis.call('HGET', K.batch(batch_id), 'device_type'), now)
if status ~= 'UP' then return {'paused', status} end
local out = {'ok', batch_id}
local inflight = K.qpu_inflight(qpu)
local deadline = deadline_ms(now, timeout_ms)
while redis.call('ZCARD', inflight) < capacity do
  local job_id = redis.call('LPOP', K.batch_pending(batch_id))
  if not job_id then break end
  if redis.call('HGET', K.job(job_id), 'status') == 'PENDING' then
    local delivery = redis.call('INCR', K.deliveries())
    redis.call('HSET', K.job(job_id), 'delivery', delivery, 'epoch', epoch, 'qpu', qpu)
    redis.call('ZADD', inflight, deadline, job_id)
    table.insert(out, job_id)
    table.insert(out, tostring(delivery))
  end
end
return out
