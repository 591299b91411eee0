-- Releases a QPU once its batch is terminal and none of its jobs is still in flight, and counts
-- the time the batch held it (from its start until now, idle time of an open batch included)
-- as its project's usage of the device type, for fair share.
-- KEYS the QPU's lease, epoch, batch and in-flight keys (qpu_keys() in _queues.lua)
-- A.now: now (µs)
-- A.token: token
-- A.epoch: epoch
-- A.half_life_s: usage half-life (s)
-- Also writes the project's usage (K.*).
-- Returns {R.OK} when released | {R.BUSY} while the batch needs the QPU | {R.FENCED}.
local now, token, epoch, half_life_s = A.now, A.token, A.epoch, tonumber(A.half_life_s)
local q = qpu_keys()
if not holds_lease(q, token, epoch) then return {R.FENCED} end
local batch_id = redis.call('GET', q.batch)
if batch_id then
  local b = read_record(K.batch(batch_id), 'batch', 'status', 'device_type', 'project_id',
    'start_us')
  if not TERMINAL_BATCH[b.status] or redis.call('ZCARD', q.inflight) > 0 then return {R.BUSY} end
  if b.start_us then
    add_usage(b.device_type, b.project_id, seconds_between(b.start_us, now), now, half_life_s)
  end
end
redis.call('DEL', q.lease, q.batch)
return {R.OK}
