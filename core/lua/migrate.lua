-- Brings records written by an earlier version up to date; idempotent, run by every scheduler
-- at start (core/store.py Store.migrate).
--   * project usage: `queued_jobs` became `unfinished_jobs` (it always counted running jobs).
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
return changed
