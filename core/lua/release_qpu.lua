-- Releases a QPU once its batch is terminal and none of its jobs is still in flight.
-- ARGV[2] QPU name
-- ARGV[3] token
-- ARGV[4] epoch
-- Returns 1 when released, 0 when the batch still needs the QPU or the lease is not ours.
local qpu, token, epoch = ARGV[2], ARGV[3], ARGV[4]
if not holds_lease(qpu, token, epoch) then return 0 end
local batch_id = redis.call('GET', K.qpu_batch(qpu))
if batch_id then
  local status = redis.call('HGET', K.batch(batch_id), 'status')
  if not TERMINAL_BATCH[status] or redis.call('ZCARD', K.qpu_inflight(qpu)) > 0 then return 0 end
end
redis.call('DEL', K.qpu_lease(qpu), K.qpu_batch(qpu))
return 1
