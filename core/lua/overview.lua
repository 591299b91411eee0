-- Everything `tweezer status`, /metrics and the dashboard show of the cluster now, read in one
-- step: its QPUs (leases, batches, in-flight jobs), who is alive, the queues, the totals and
-- the jobs finished in the last minute, when each device type was last forecast
-- (core/overview.py decodes it). Writes nothing.
-- A.now: now (µs)
-- A.device_types: the device types served (JSON array)
-- A.priorities: the queue priorities, highest first (JSON array)
-- A.qpus: the configured QPUs (JSON array); QPUs of served types that workers announced are
--         added
-- A.window_s: the throughput window (s)
-- Reads presence, leases, batches, queues, totals, counters and throughput slots (K.*).
-- Returns a JSON document (data, no reply code).
local now, types, priorities = A.now, cjson.decode(A.device_types), cjson.decode(A.priorities)
local configured, window_s = cjson.decode(A.qpus), tonumber(A.window_s)

-- A hash as a table (cjson writes an empty one as {}).
local function hash(key)
  local flat, out = redis.call('HGETALL', key), {}
  for i = 1, #flat, 2 do out[flat[i]] = flat[i + 1] end
  return out
end

local out = {
  qpu_presence = hash(K.qpu_presence()),
  workers = hash(K.worker_presence()),
  schedulers = hash(K.scheduler_presence()),
  scheduler_leases = hash(K.scheduler_leases()),
  totals = hash(K.totals()),
  devices = {},
  forecast_at = {},
  qpus = {},
  queue = {},
}

local served, names, seen = {}, {}, {}
for _, device_type in ipairs(types) do
  served[device_type] = true
  out.devices[device_type] = device_status(device_type, now)
  out.forecast_at[device_type] = redis.call('HGET', K.forecast(device_type), FORECAST_AT) or nil
end
for _, qpu in ipairs(configured) do
  table.insert(names, qpu)
  seen[qpu] = true
end
for qpu, _ in pairs(out.qpu_presence) do
  local device_type = string.match(qpu, '^(.*)-%d+$')
  if not seen[qpu] and device_type and served[device_type] then
    table.insert(names, qpu)
    seen[qpu] = true
  end
end

local BATCH_FIELDS = {'project_id', 'user_id', 'status', 'open', 'created_us', 'start_us',
  'activity_us', 'jobs_total', 'runs_total', 'runs_done', 'device_type', 'queue_priority'}
for _, qpu in ipairs(names) do
  local entry = {
    name = qpu,
    lease_ms = redis.call('PTTL', K.qpu_lease(qpu)),
    inflight = redis.call('ZCARD', K.qpu_inflight(qpu)),
  }
  local batch_id = redis.call('GET', K.qpu_batch(qpu))
  if batch_id then
    local values = read_record(K.batch(batch_id), 'batch', unpack(BATCH_FIELDS))
    local batch = {id = batch_id, counts = hash(K.batch_counts(batch_id))}
    for _, name in ipairs(BATCH_FIELDS) do
      if values[name] then batch[name] = values[name] end
    end
    entry.batch = batch
  end
  table.insert(out.qpus, entry)
end

for _, device_type in ipairs(types) do
  for _, priority in ipairs(priorities) do
    local level = {device_type = device_type, priority = priority, batches = 0}
    for _, project_id in ipairs(redis.call('ZRANGE', K.queue(device_type, priority), 0, -1)) do
      local waiting = K.project_queue(device_type, priority, project_id)
      level.batches = level.batches + redis.call('ZCARD', waiting)
      local head = redis.call('ZRANGE', waiting, 0, 0, 'WITHSCORES')
      if head[2] and (not level.oldest_us or tonumber(head[2]) < tonumber(level.oldest_us)) then
        level.oldest_us = head[2]
      end
    end
    table.insert(out.queue, level)
  end
end

-- Jobs finished in the last `window_s`, from the whole slots it covers.
local slot = math.floor(tonumber(now) / 1000000 / THROUGHPUT_SLOT_S)
local finished = 0
for s = slot - window_s / THROUGHPUT_SLOT_S, slot - 1 do
  finished = finished + tonumber(redis.call('GET', K.throughput(s)) or '0')
end
out.finished_last_window = finished
return cjson.encode(out)
