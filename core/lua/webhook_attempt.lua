-- Records one delivery attempt of a batch's webhook and what comes next: due again at ARGV[5]
-- (a retry), or nothing more (ARGV[5] = 0: delivered, or given up).
-- KEYS[1] the webhooks zset
-- KEYS[2] the batch
-- KEYS[3] its attempts list
-- ARGV[2] batch id
-- ARGV[3] the attempt (JSON)
-- ARGV[4] the delivery's state now: WEBHOOK.*
-- ARGV[5] when the next attempt is due (µs), or 0
-- Returns {R.OK}.
local webhooks, batch, attempts = KEYS[1], KEYS[2], KEYS[3]
local batch_id, attempt, state, next_us = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
redis.call('RPUSH', attempts, attempt)
redis.call('HSET', batch, 'webhook_state', state)
if next_us > 0 then
  redis.call('ZADD', webhooks, 'XX', int(next_us), batch_id)
else
  redis.call('ZREM', webhooks, batch_id)
end
return {R.OK}
