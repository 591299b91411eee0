-- Releases a QPU once its batch is terminal and none of its jobs is still in flight, and counts
-- the time the batch held it (from its start until now, idle time of an open batch included)
-- as its project's usage of the device type, for fair share.
-- KEYS the QPU's lease, epoch, batch and in-flight keys (qpu_keys() in _lib.lua)
-- ARGV[2] now (µs)
-- ARGV[3] token
-- ARGV[4] epoch
-- ARGV[5] usage half-life (s)
-- Also writes the project's usage (K.*).
-- Returns {R.OK} when released | {R.BUSY} while the batch needs the QPU | {R.FENCED}.
local now, token, epoch, half_life_s = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local q = qpu_keys()
if not holds_lease(q, token, epoch) then return {R.FENCED} end
local batch_id = redis.call('GET', q.batch)
if batch_id then
  local b = redis.call('HMGET', K.batch(batch_id), 'status', 'device_type', 'project_id',
    'start_us')
  if not TERMINAL_BATCH[b[1]] or redis.call('ZCARD', q.inflight) > 0 then return {R.BUSY} end
  if b[4] then
    add_usage(b[2], b[3], (tonumber(now) - tonumber(b[4])) / 1000000, now, half_life_s)
  end
end
redis.call('DEL', q.lease, q.batch)
return {R.OK}
