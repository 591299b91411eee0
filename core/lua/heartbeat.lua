-- Pushes back the in-flight deadline of a running job while its worker is alive, and records
-- how many shots it has done.
-- KEYS[1] the job
-- ARGV[2] now (µs)
-- ARGV[3] job id
-- ARGV[4] delivery id
-- ARGV[5] heartbeat TTL (ms)
-- ARGV[6] shots done so far
-- Also writes its QPU's in-flight set (K.*).
-- Returns {R.OK} while the job is still this delivery's and RUNNING, else {R.STALE, status}
-- (e.g. cancelled: the worker aborts it).
local job, now, job_id, delivery, ttl_ms = KEYS[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local h = redis.call('HMGET', job, 'status', 'delivery', 'qpu')
if h[1] ~= JOB.RUNNING or h[2] ~= delivery then return {R.STALE, h[1] or MISSING} end
redis.call('ZADD', K.qpu_inflight(h[3]), 'XX', deadline_ms(now, ttl_ms), job_id)
redis.call('HSET', job, 'progress', ARGV[6])
return {R.OK}
