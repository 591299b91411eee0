-- Grants a free QPU: to the batch it was serving (its lease expired with a scheduler that
-- died), else to `candidate`, the waiting batch the scheduling policy chose
-- (scheduling/policies.py). The choice is made in Python; this is the fenced grant: it happens
-- only if the QPU is still free, the device UP and the candidate still waiting, so schedulers
-- racing each other grant each QPU once and each batch once.
-- KEYS the QPU's lease, epoch, batch and in-flight keys (qpu_keys() in _queues.lua)
-- A.now: now (µs)
-- A.qpu: QPU name
-- A.device_type: device type
-- A.token: new lease token
-- A.ttl_ms: lease TTL (ms)
-- A.candidate: candidate batch id ('' to ask whether there is anything to choose from)
-- A.priorities: priorities (JSON array)
-- Also writes the granted batch and its queue (K.*).
-- Returns {R.ACQUIRED, batch id, epoch} | {R.HELD} | {R.NOTHING} | {R.PAUSED, device status}
--       | {R.CHOOSE} (it is free and batches wait: call again with a candidate)
--       | {R.STALE, candidate} (the candidate no longer waits here).
-- A batch the QPU was serving is resumed whatever the device's status (it pauses rather than
-- loses its QPU); a new batch starts only on a device that is UP.
local now, qpu, device_type, token, ttl_ms = A.now, A.qpu, A.device_type, A.token, A.ttl_ms
local candidate = A.candidate
local q = qpu_keys()
if redis.call('EXISTS', q.lease) == 1 then return {R.HELD} end

local batch_id = redis.call('GET', q.batch)
if batch_id then
  local status = redis.call('HGET', K.batch(batch_id), 'status')
  if TERMINAL_BATCH[status] and redis.call('ZCARD', q.inflight) == 0 then batch_id = nil end
end
if not batch_id then
  local status = device_status(device_type, now)
  if status ~= DEVICE.UP then return {R.PAUSED, status} end
  if candidate == '' then
    for _, priority in ipairs(cjson.decode(A.priorities)) do
      if redis.call('EXISTS', K.queue(device_type, priority)) == 1 then return {R.CHOOSE} end
    end
    redis.call('DEL', q.batch)
    return {R.NOTHING}
  end
  local b = read_record(K.batch(candidate), 'batch', 'status', 'device_type')
  if b.status ~= BATCH.PENDING or b.device_type ~= device_type then
    return {R.STALE, candidate}
  end
  batch_id = candidate
end

redis.call('SET', q.lease, token, 'PX', ttl_ms)
local epoch = redis.call('INCR', q.epoch)
redis.call('SET', q.batch, batch_id)
if redis.call('HGET', K.batch(batch_id), 'status') == BATCH.PENDING then
  redis.call('HSET', K.batch(batch_id), 'qpu', qpu)
  set_batch_status(batch_id, BATCH.PENDING, BATCH.RUNNING, now)
end
return {R.ACQUIRED, batch_id, tostring(epoch)}
