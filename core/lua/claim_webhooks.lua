-- Claims the webhook deliveries due now, at most ARGV[4]: each is pushed ARGV[3] µs ahead, so no
-- other sender takes it meanwhile, and one whose sender dies is due again then (at least once).
-- KEYS[1] the webhooks zset
-- ARGV[2] now (µs)
-- ARGV[3] lease (µs)
-- ARGV[4] most deliveries per call
-- Returns the claimed batch ids (data, no reply code).
local webhooks, now, lease_us, most = KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local due = redis.call('ZRANGEBYSCORE', webhooks, '-inf', int(now), 'LIMIT', 0, most)
for _, batch_id in ipairs(due) do
  redis.call('ZADD', webhooks, 'XX', int(now + lease_us), batch_id)
end
return due
