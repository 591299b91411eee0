-- Ends the QPU's open batch TIMED_OUT (closed; the QPU can then be released) when it has held the
-- QPU long enough (README "Fair hold of a QPU by open batches"):
--   * it has held it for `max_hold` since it started, busy or not: its unfinished jobs are
--     CANCELED (a running one's result is refused at commit, as on a cancel);
--   * or none of its jobs is active and nothing happened (no job added or finished) for
--     `timeout`, or for the shorter `contended_idle` while another project has a batch waiting
--     for the same device type.
-- KEYS the QPU's lease, epoch, batch and in-flight keys (qpu_keys() in _queues.lua)
-- A.now: now (µs)
-- A.token: token
-- A.epoch: epoch
-- A.idle_us: open-batch idle timeout (µs)
-- A.contended_idle_us: idle timeout while another project waits (µs)
-- A.max_hold_us: longest hold (µs)
-- A.priorities: priorities (JSON array)
-- Also reads and writes the batch, its jobs and the queues (K.*).
-- Returns {R.TIMED_OUT, batch id, why} | {R.OK} (it keeps the QPU) | {R.FENCED}.
local now, token, epoch = A.now, A.token, A.epoch
local timeout, contended_idle = tonumber(A.idle_us), tonumber(A.contended_idle_us)
local max_hold = tonumber(A.max_hold_us)
local q = qpu_keys()
if not holds_lease(q, token, epoch) then return {R.FENCED} end
local batch_id = redis.call('GET', q.batch)
if not batch_id then return {R.OK} end
local b = read_record(K.batch(batch_id), 'batch', 'status', 'open', 'activity_us',
  'device_type', 'start_us', 'project_id')
if b.status ~= BATCH.RUNNING or b.open ~= '1' then return {R.OK} end

local function time_out(why)
  cancel_unfinished_jobs(batch_id, now)
  set_batch_status(batch_id, BATCH.RUNNING, BATCH.TIMED_OUT, now)
  return {R.TIMED_OUT, batch_id, why}
end

if tonumber(now) - tonumber(b.start_us) >= max_hold then return time_out(HOLD_END.MAX_HOLD) end
if active_jobs(batch_id) > 0 then return {R.OK} end
if device_status(b.device_type, now) ~= DEVICE.UP then
  -- A paused batch is not idle by its user's doing: its idle clock starts again on resume.
  redis.call('HSET', K.batch(batch_id), 'activity_us', now)
  return {R.OK}
end
local idle = tonumber(now) - tonumber(b.activity_us)
if idle >= timeout then return time_out(HOLD_END.IDLE) end
if idle >= contended_idle then
  for _, priority in ipairs(cjson.decode(A.priorities)) do
    local waiting = redis.call('ZRANGE', K.queue(b.device_type, priority), 0, 1)
    if #waiting > 1 or (waiting[1] and waiting[1] ~= b.project_id) then
      return time_out(HOLD_END.CONTENDED_IDLE)
    end
  end
end
return {R.OK}
