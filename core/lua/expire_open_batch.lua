-- Times out the QPU's open batch when none of its jobs is active and nothing happened for
-- `timeout` (no job added or finished): it ends TIMED_OUT, closed, and the QPU can be released.
-- ARGV[2] now (µs)
-- ARGV[3] QPU name
-- ARGV[4] token
-- ARGV[5] epoch
-- ARGV[6] open-batch timeout (µs)
-- Returns {'timed_out', batch id} | {'no'} | {'fenced'}.
local now, qpu, token, epoch, timeout = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
if not holds_lease(qpu, token, epoch) then return {'fenced'} end
local batch_id = redis.call('GET', K.qpu_batch(qpu))
if not batch_id then return {'no'} end
local b = redis.call('HMGET', K.batch(batch_id), 'status', 'open', 'activity_us', 'device_type')
if b[1] ~= 'RUNNING' or b[2] ~= '1' or active_jobs(batch_id) > 0 then return {'no'} end
if device_status(b[4], now) ~= 'UP' then
  -- A paused batch is not idle by its user's doing: its idle clock starts again on resume.
  redis.call('HSET', K.batch(batch_id), 'activity_us', now)
  return {'no'}
end
if tonumber(now) - tonumber(b[3]) < timeout then return {'no'} end
set_batch_open(batch_id, false, now)
set_batch_status(batch_id, 'RUNNING', 'TIMED_OUT', now)
return {'timed_out', batch_id}
