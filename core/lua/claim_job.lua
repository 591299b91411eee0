-- A worker claims a delivered job: PENDING -> RUNNING if the delivery is still the job's current
-- one. A stale or duplicate delivery (redelivered message, superseded dispatch) claims nothing.
-- KEYS[1] the job
-- ARGV[2] now (µs)
-- ARGV[3] job id
-- ARGV[4] delivery id
-- ARGV[5] heartbeat TTL (ms)
-- ARGV[6] the worker claiming it (shown in the job's history)
-- Also writes the job's status indexes and its QPU's in-flight set (K.*).
-- Returns {R.OK, attempts} | {R.STALE, status or 'MISSING'}.
local job, now, job_id, delivery, ttl_ms = KEYS[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local h = redis.call('HMGET', job, 'status', 'delivery', 'batch_id', 'qpu', 'start_us')
if not h[1] or h[2] ~= delivery or h[1] ~= JOB.PENDING then
  return {R.STALE, h[1] or MISSING}
end
set_job_status(job_id, h[3], JOB.PENDING, JOB.RUNNING, now)
local attempts = redis.call('HINCRBY', job, 'attempts', 1)
history_append(job, {attempt = attempts, qpu = h[4], worker = ARGV[6], started_us = tostring(now)})
if not h[5] then redis.call('HSET', job, 'start_us', now) end
redis.call('ZADD', K.qpu_inflight(h[4]), 'XX', deadline_ms(now, ttl_ms), job_id)
return {R.OK, tostring(attempts)}
