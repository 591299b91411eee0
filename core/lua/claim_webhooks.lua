-- Claims the webhook deliveries due now, at most A.most, and records an attempt for each
-- before any request is sent (outcome WEBHOOK_ATTEMPT.SENDING): a sender that dies in the
-- middle of a delivery, however it dies, leaves the attempt counted, so the retry window and
-- the cap on attempts end even a delivery that kills every sender that makes it. Each claimed
-- delivery is pushed A.lease_us µs ahead: no other sender takes it meanwhile, and one whose
-- sender died is due again then (at least once), when this script marks the attempt it left
-- LOST. A delivery that was due past its window, or has had its attempts, ends FAILED here.
-- KEYS[1] the webhooks zset
-- A.now: now (µs)
-- A.lease_us: lease (µs)
-- A.most: most deliveries per call
-- A.retry_for_us: how long after its batch ended a delivery is tried (µs)
-- A.max_attempts: most attempts per delivery
-- A.attempt: the attempt to record (compact JSON with "outcome":"<WEBHOOK_ATTEMPT.SENDING>")
-- Keys found through records: K.batch(id), K.batch_webhook(id) (its attempts list).
-- Returns {batch id, index of its new attempt} per claimed delivery (data, no reply code).
local webhooks, now, lease_us, most = KEYS[1], tonumber(A.now), tonumber(A.lease_us), A.most
local retry_for_us, max_attempts = tonumber(A.retry_for_us), tonumber(A.max_attempts)
local attempt = A.attempt
-- The entries are the sender's compact JSON, rewritten as text: cjson would round their
-- 16-digit times. Neither string holds a pattern character.
local sending = '"outcome":"' .. WEBHOOK_ATTEMPT.SENDING .. '"'
local lost = '"outcome":"' .. WEBHOOK_ATTEMPT.LOST .. '"'
local claimed = {}
local due = redis.call('ZRANGEBYSCORE', webhooks, '-inf', int(now), 'WITHSCORES', 'LIMIT', 0, most)
for i = 1, #due, 2 do
  local batch_id, due_us = due[i], tonumber(due[i + 1])
  local batch, attempts = K.batch(batch_id), K.batch_webhook(batch_id)
  local b = read_record(batch, 'batch', 'webhook', 'end_us')
  if not b.webhook or not b.end_us then
    redis.call('ZREM', webhooks, batch_id)  -- purged, or nothing to announce any more
  else
    local made = redis.call('LLEN', attempts)
    local last = made > 0 and redis.call('LINDEX', attempts, -1)
    if last and string.find(last, sending, 1, true) then
      redis.call('LSET', attempts, -1, (string.gsub(last, sending, lost, 1)))
    end
    -- A retry is due within the window (the sender schedules none past it); a delivery due
    -- past it was taken over from a sender that died, and is not made again.
    if made >= max_attempts or due_us > tonumber(b.end_us) + retry_for_us then
      redis.call('HSET', batch, 'webhook_state', WEBHOOK.FAILED)
      redis.call('ZREM', webhooks, batch_id)
    else
      redis.call('RPUSH', attempts, attempt)
      redis.call('ZADD', webhooks, 'XX', int(now + lease_us), batch_id)
      table.insert(claimed, {batch_id, made})
    end
  end
end
return claimed
