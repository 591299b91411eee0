-- What a policy's snapshot of one device type is made of, but for the batches' fields
-- (scheduler/reader.py): of each priority level, each project's oldest A.window batches; the
-- share of every project found; every project's usage; and the versions they are of. One
-- step, however many projects wait: read as a command per project, 1,000 projects cost the
-- scheduler 20 ms of packing and parsing per grant. A scheduler runs it once, then reads only
-- what changed (snapshot-changes), and again every minute. Writes nothing.
-- A.device_type: the device type
-- A.priorities: the queue priorities, highest first (JSON array)
-- A.window: how many of each project's oldest batches (>= 1)
-- Reads queue:{type}:{priority}, each project's queue, project:{id}, device:{type}:usage and
-- usage-at, snapshot-version:{type} and shares-version (K.*).
-- Returns a JSON document (data, no reply code): {levels = per priority, in order, a list of
-- [project, batch id, ...]; shares = {project = share or false}; usage = {project = [QPU
-- seconds, when counted (µs)]}; version = the snapshot-version and shares_version = the
-- shares-version they are of} (cjson writes an empty list as {}).
local window = tonumber(A.window)
local levels, shares, usage = {}, {}, {}
local version = redis.call('GET', K.snapshot_version(A.device_type)) or '0'
local shares_version = redis.call('GET', K.shares_version()) or '0'
for i, priority in ipairs(cjson.decode(A.priorities)) do
  local level = {}
  for _, project_id in ipairs(redis.call('ZRANGE', K.queue(A.device_type, priority), 0, -1)) do
    local row = redis.call('ZRANGE', K.project_queue(A.device_type, priority, project_id), 0, window - 1)
    table.insert(row, 1, project_id)
    table.insert(level, row)
    if shares[project_id] == nil then
      shares[project_id] = redis.call('HGET', K.project(project_id), 'share') or false
    end
  end
  levels[i] = level
end
local values = redis.call('HGETALL', K.device_usage(A.device_type))
for i = 1, #values, 2 do
  local at = redis.call('HGET', K.device_usage_at(A.device_type), values[i])
  usage[values[i]] = {values[i + 1], at or false}
end
return cjson.encode({levels = levels, shares = shares, usage = usage, version = version,
  shares_version = shares_version})
