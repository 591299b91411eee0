-- The waiting queues the scheduling policy chooses from, devices' effective statuses and the QPU
-- leases the scheduler's scripts are fenced by.

-- The waiting set the scheduling policy chooses from (scheduler/reader.py reads it): a
-- priority level's queue holds the projects with batches waiting there, and each project's
-- own queue holds its batches in creation order.

-- What a policy's snapshot of the type is made of changed (a project's queue: 'queue|' ..
-- priority .. '|' .. project; its usage: 'usage|' .. project): versioned, so a scheduler
-- reads again only what changed since the version it read (scheduler/reader.py).
local function snapshot_changed(device_type, what)
  local version = redis.call('INCR', K.snapshot_version(device_type))
  redis.call('ZADD', K.snapshot_changes(device_type), version, what)
end

local function queue_changed(device_type, priority, project_id)
  snapshot_changed(device_type, 'queue|' .. priority .. '|' .. project_id)
end

local function enqueue_batch(batch_id, device_type, priority, project_id, created)
  redis.call('ZADD', K.project_queue(device_type, priority, project_id), created, batch_id)
  redis.call('ZADD', K.queue(device_type, priority), 'NX', 0, project_id)
  queue_changed(device_type, priority, project_id)
end

local function dequeue_batch(batch_id, device_type, priority, project_id)
  local own = K.project_queue(device_type, priority, project_id)
  redis.call('ZREM', own, batch_id)
  if redis.call('ZCARD', own) == 0 then
    redis.call('ZREM', K.queue(device_type, priority), project_id)
  end
  queue_changed(device_type, priority, project_id)
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
