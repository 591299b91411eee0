-- Accounting and quotas: QPU usage (fair share), stored bytes, the cost fit, and the quotas
-- checked at commit.

-- What a batch's and a job's index entries and hash overhead take in Redis beyond their field
-- texts: an estimate (measured: README, "Bounded storage") counted in stored_bytes.
local BATCH_OVERHEAD_BYTES = 1024

local JOB_OVERHEAD_BYTES = 1536

-- Adds `held_s` QPU seconds to a project's usage of a device type, after decaying what was
-- counted before by `half_life_s` (halved every half-life: scheduling/policies.py decayed() is
-- the same rule, which the snapshot applies up to its `now`).
local function add_usage(device_type, project_id, held_s, now, half_life_s)
  local value = tonumber(redis.call('HGET', K.device_usage(device_type), project_id) or '0')
  local since = tonumber(redis.call('HGET', K.device_usage_at(device_type), project_id) or now)
  local elapsed_s = (tonumber(now) - since) / 1000000
  if elapsed_s > 0 then value = value * 2 ^ (-elapsed_s / half_life_s) end
  redis.call('HSET', K.device_usage(device_type), project_id, string.format('%.6f', value + held_s))
  redis.call('HSET', K.device_usage_at(device_type), project_id, now)
  snapshot_changed(device_type, 'usage|' .. project_id)
end

-- Counts `bytes` (negative: freed) against the project's storage. Through int(): a Lua -0 is
-- written "-0", which HINCRBY refuses.
local function add_stored_bytes(project_id, bytes)
  redis.call('HINCRBY', K.project_usage(project_id), 'stored_bytes', int(bytes))
end

-- Folds finished jobs' run times into their device type's cost fit (core/costs.py): seconds per
-- job per (1 + µs of pulse), by atom count, an exponentially weighted mean. `runs` lists
-- {atoms = string, duration_ns = string, seconds = number} of first attempts only (a retried
-- job's run includes its lost attempts).
local COST_FIT_WEIGHT = 0.2

local function fit_costs(device_type, runs)
  if #runs == 0 then return end
  local key = K.device_costs(device_type)
  local fitted = {}
  for _, run in ipairs(runs) do
    local per = run.seconds / (1 + tonumber(run.duration_ns) / 1000)
    local old = fitted[run.atoms]
    if old == nil then
      local raw = redis.call('HGET', key, run.atoms)
      old = raw and tonumber(raw)
    end
    if old then per = (1 - COST_FIT_WEIGHT) * old + COST_FIT_WEIGHT * per end
    fitted[run.atoms] = per
  end
  for atoms, per in pairs(fitted) do
    redis.call('HSET', key, atoms, string.format('%.6f', per))
  end
end

-- Bytes of a record's field names and values (a table of strings).
local function fields_bytes(fields)
  local n = 0
  for name, value in pairs(fields) do n = n + #name + #value end
  return n
end

-- What `jobs` (field tables) will count against their project's storage: their records and
-- the reservations for their results.
local function jobs_bytes(jobs)
  local n = 0
  for _, fields in ipairs(jobs) do
    n = n + fields_bytes(fields) + JOB_OVERHEAD_BYTES + tonumber(fields['reserved_bytes'] or '0')
  end
  return n
end

-- Quotas counted at commit, so concurrent requests cannot pass them together (the static ones,
-- runs per job and device types, are checked in Python: core/quotas.py). Returns
-- {R.QUOTA, project id, name, limit, in use[, needed]} when the project may not take `new_jobs` more
-- unfinished jobs, one more open batch when `opens`, or `new_bytes` more stored bytes (its own
-- max_stored_bytes, else `default_max_bytes`; '0': no limit); nil when it may.
local function quota_refusal(project_id, new_jobs, opens, new_bytes, default_max_bytes)
  local limits = read_record(K.project(project_id), 'project', 'max_queued_jobs',
    'max_open_batches', 'max_stored_bytes')
  if limits.max_queued_jobs and new_jobs > 0 then
    local used = tonumber(redis.call('HGET', K.project_usage(project_id), 'unfinished_jobs') or '0')
    if used + new_jobs > tonumber(limits.max_queued_jobs) then
      return {R.QUOTA, project_id, 'max_queued_jobs', limits.max_queued_jobs, int(used)}
    end
  end
  if limits.max_open_batches and opens then
    local used = redis.call('SCARD', K.project_open_batches(project_id))
    if used >= tonumber(limits.max_open_batches) then
      return {R.QUOTA, project_id, 'max_open_batches', limits.max_open_batches, int(used)}
    end
  end
  local max_bytes = limits.max_stored_bytes
    or (default_max_bytes ~= '0' and default_max_bytes) or nil
  if max_bytes then
    local used = tonumber(redis.call('HGET', K.project_usage(project_id), 'stored_bytes') or '0')
    if used + new_bytes > tonumber(max_bytes) then
      return {R.QUOTA, project_id, 'max_stored_bytes', max_bytes, int(used), int(new_bytes)}
    end
  end
  return nil
end
