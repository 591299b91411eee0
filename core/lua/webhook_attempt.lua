-- Records how a claimed delivery attempt went, in place of the SENDING entry its claim
-- recorded at index A.index, and, while that claim is still the delivery's newest, what comes
-- next: due again at A.next_us (a retry), or nothing more (0: delivered, or given up). A sender
-- whose claim ran out and was taken over records its outcome and leaves the rest to the newer
-- claim.
-- KEYS[1] the webhooks zset
-- KEYS[2] the batch
-- KEYS[3] its attempts list
-- A.batch_id: batch id
-- A.index: the attempt's index in the list (0-based)
-- A.attempt: the attempt (JSON)
-- A.state: the delivery's state now: WEBHOOK.*
-- A.next_us: when the next attempt is due (µs), or 0
-- Returns {R.OK}.
local webhooks, batch, attempts = KEYS[1], KEYS[2], KEYS[3]
local batch_id, index, attempt = A.batch_id, tonumber(A.index), A.attempt
local state, next_us = A.state, tonumber(A.next_us)
local made = redis.call('LLEN', attempts)
if index >= made then
  return {R.OK}  -- the batch's inputs were purged meanwhile
end
redis.call('LSET', attempts, index, attempt)
if index == made - 1 then
  redis.call('HSET', batch, 'webhook_state', state)
  if next_us > 0 then
    redis.call('ZADD', webhooks, 'XX', int(next_us), batch_id)
  else
    redis.call('ZREM', webhooks, batch_id)
  end
end
return {R.OK}
