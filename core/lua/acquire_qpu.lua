-- Grants a free QPU to a batch: the one it was serving (its lease expired with a scheduler that
-- died) or else a waiting batch of its device type: HIGH before MEDIUM before LOW, and within a
-- level the oldest batch of the project that got a QPU of this type least recently (fair share,
-- docs/design.md "Scheduling policy"; a project never served yet goes first).
-- KEYS the QPU's lease, epoch, batch and in-flight keys (qpu_keys() in _lib.lua)
-- ARGV[2] now (µs)
-- ARGV[3] QPU name
-- ARGV[4] device type
-- ARGV[5] new lease token
-- ARGV[6] lease TTL (ms)
-- ARGV[7] priorities, highest first (JSON array)
-- Also touches the batch it grants and the device type's queues (K.*).
-- Returns {R.ACQUIRED, batch id, epoch} | {R.HELD} | {R.NOTHING} | {R.PAUSED, device status}.
-- A batch the QPU was serving is resumed whatever the device's status (it pauses rather than
-- loses its QPU); a new batch starts only on a device that is UP.
local now, qpu, device_type, token, ttl_ms = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local priorities = cjson.decode(ARGV[7])
local q = qpu_keys()
if redis.call('EXISTS', q.lease) == 1 then return {R.HELD} end

-- The next batch of one level: among the projects served least recently (ties are common: all
-- projects never served), the one whose oldest waiting batch is oldest.
local function next_batch(priority)
  local level = K.queue(device_type, priority)
  local least = redis.call('ZRANGE', level, 0, 0, 'WITHSCORES')
  if #least == 0 then return nil end
  local best, best_created = nil, nil
  for _, project_id in ipairs(redis.call('ZRANGEBYSCORE', level, least[2], least[2])) do
    local own = K.project_queue(device_type, priority, project_id)
    local head = redis.call('ZRANGE', own, 0, 0, 'WITHSCORES')
    if head[1] and (best == nil or tonumber(head[2]) < best_created) then
      best, best_created = head[1], tonumber(head[2])
    end
  end
  return best
end

local batch_id = redis.call('GET', q.batch)
if batch_id then
  local status = redis.call('HGET', K.batch(batch_id), 'status')
  if TERMINAL_BATCH[status] and redis.call('ZCARD', q.inflight) == 0 then batch_id = nil end
end
if not batch_id then
  local status = device_status(device_type, now)
  if status ~= DEVICE.UP then return {R.PAUSED, status} end
  for _, priority in ipairs(priorities) do
    batch_id = next_batch(priority)
    if batch_id then break end
  end
  if not batch_id then
    redis.call('DEL', q.batch)
    return {R.NOTHING}
  end
  -- The project was just served: it goes behind the others in every level of this type.
  local project_id = redis.call('HGET', K.batch(batch_id), 'project_id')
  redis.call('HSET', K.device_served(device_type), project_id, now)
  for _, priority in ipairs(priorities) do
    redis.call('ZADD', K.queue(device_type, priority), 'XX', now, project_id)
  end
end

redis.call('SET', q.lease, token, 'PX', ttl_ms)
local epoch = redis.call('INCR', q.epoch)
redis.call('SET', q.batch, batch_id)
if redis.call('HGET', K.batch(batch_id), 'status') == BATCH.PENDING then
  redis.call('HSET', K.batch(batch_id), 'qpu', qpu)
  set_batch_status(batch_id, BATCH.PENDING, BATCH.RUNNING, now)
end
return {R.ACQUIRED, batch_id, tostring(epoch)}
