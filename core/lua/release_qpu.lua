-- Releases a QPU once its batch is terminal and none of its jobs is still in flight.
-- KEYS the QPU's lease, epoch, batch and in-flight keys (qpu_keys() in _lib.lua)
-- ARGV[2] token
-- ARGV[3] epoch
-- Returns {R.OK} when released | {R.BUSY} while the batch needs the QPU | {R.FENCED}.
local token, epoch = ARGV[2], ARGV[3]
local q = qpu_keys()
if not holds_lease(q, token, epoch) then return {R.FENCED} end
local batch_id = redis.call('GET', q.batch)
if batch_id then
  local status = redis.call('HGET', K.batch(batch_id), 'status')
  if not TERMINAL_BATCH[status] or redis.call('ZCARD', q.inflight) > 0 then return {R.BUSY} end
end
redis.call('DEL', q.lease, q.batch)
return {R.OK}
