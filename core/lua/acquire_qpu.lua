-- Grants a free QPU to a batch: the one it was serving (its lease expired with a scheduler that
-- died) or else the head of its device type's queues, HIGH before MEDIUM before LOW.
-- ARGV[2] now (µs)
-- ARGV[3] QPU name
-- ARGV[4] device type
-- ARGV[5] new lease token
-- ARGV[6] lease TTL (ms)
-- ARGV[7] priorities, highest first (JSON array)
-- Returns {'acquired', batch id, epoch} | {'held'} | {'idle'} | {'unavailable', status}.
-- A batch the QPU was serving is resumed whatever the device's status (it pauses rather than
-- loses its QPU); a new batch starts only on a device that is UP.
local now, qpu, device_type, token, ttl_ms = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if redis.call('EXISTS', K.qpu_lease(qpu)) == 1 then return {'held'} end

local batch_id = redis.call('GET', K.qpu_batch(qpu))
if batch_id then
  local status = redis.call('HGET', K.batch(batch_id), 'status')
  local in_flight = redis.call('ZCARD', K.qpu_inflight(qpu))
  if TERMINAL_BATCH[status] and in_flight == 0 then batch_id = nil end
end
if not batch_id then
  local status = device_status(device_type, now)
  if status ~= 'UP' then return {'unavailable', status} end
  for _, priority in ipairs(cjson.decode(ARGV[7])) do
    local head = redis.call('ZRANGE', K.queue(device_type, priority), 0, 0)[1]
    if head then batch_id = head break end
  end
  if not batch_id then
    redis.call('DEL', K.qpu_batch(qpu))
    return {'idle'}
  end
end

redis.call('SET', K.qpu_lease(qpu), token, 'PX', ttl_ms)
local epoch = redis.call('INCR', K.qpu_epoch(qpu))
redis.call('SET', K.qpu_batch(qpu), batch_id)
if redis.call('HGET', K.batch(batch_id), 'status') == 'PENDING' then
  redis.call('HSET', K.batch(batch_id), 'qpu', qpu)
  set_batch_status(batch_id, 'PENDING', 'RUNNING', now)
end
return {'acquired', batch_id, tostring(epoch)}
