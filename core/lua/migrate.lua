-- Brings records written by an earlier version up to date; idempotent, run by every scheduler
-- at start (core/store.py Store.migrate).
--   * project usage: `queued_jobs` became `unfinished_jobs` (it always counted running jobs).
--   * `totals` (batches and jobs per device type and status, core/counters.py) and each
--     project's batches per status are counted from the records once, then kept by every
--     move; until then they are counted afresh.
-- KEYS[1] the set of every project
-- Returns the number of records changed (data, no reply code).
local changed = 0
for _, project_id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local usage = K.project_usage(project_id)
  local old = redis.call('HGET', usage, 'queued_jobs')
  if old then
    redis.call('HINCRBY', usage, 'unfinished_jobs', old)
    redis.call('HDEL', usage, 'queued_jobs')
    changed = changed + 1
  end
end
if redis.call('HEXISTS', K.totals(), TOTALS_COUNTED) == 0 then
  redis.call('DEL', K.totals())
  for _, project_id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    redis.call('DEL', K.project_batch_counts(project_id))
  end
  for _, batch_id in ipairs(redis.call('ZRANGE', K.all_batches(), 0, -1)) do
    local b = read_record(K.batch(batch_id), 'batch', 'device_type', 'status', 'project_id')
    if b.device_type then
      move_total('batch', b.device_type, nil, b.status)
      move_project_count(b.project_id, nil, b.status)
      local counts = redis.call('HGETALL', K.batch_counts(batch_id))
      for i = 1, #counts, 2 do
        redis.call('HINCRBY', K.totals(), 'job:' .. b.device_type .. ':' .. counts[i], counts[i + 1])
      end
    end
  end
  redis.call('HSET', K.totals(), TOTALS_COUNTED, 1)
  changed = changed + 1
end
return changed
