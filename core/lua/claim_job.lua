-- A worker claims a delivered job: PENDING -> RUNNING if the delivery is still the job's current
-- one. A stale or duplicate delivery (redelivered message, superseded dispatch) claims nothing.
-- ARGV[2] now (µs)
-- ARGV[3] job id
-- ARGV[4] delivery id
-- ARGV[5] heartbeat TTL (ms)
-- Returns {'claimed', attempts} | {'stale', status}.
local now, job_id, delivery, ttl_ms = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local job = K.job(job_id)
local h = redis.call('HMGET', job, 'status', 'delivery', 'batch_id', 'qpu', 'start_us')
if not h[1] or h[2] ~= delivery or h[1] ~= 'PENDING' then
  return {'stale', h[1] or 'MISSING'}
end
set_job_status(job_id, h[3], 'PENDING', 'RUNNING', now)
local attempts = redis.call('HINCRBY', job, 'attempts', 1)
if not h[5] then redis.call('HSET', job, 'start_us', now) end
redis.call('ZADD', K.qpu_inflight(h[4]), 'XX', deadline_ms(now, ttl_ms), job_id)
return {'claimed', tostring(attempts)}
