-- Pushes back the in-flight deadline of a running job while its worker is alive, and records
-- how many shots it has done.
-- ARGV[2] now (µs)
-- ARGV[3] job id
-- ARGV[4] delivery id
-- ARGV[5] heartbeat TTL (ms)
-- ARGV[6] shots done so far
-- Returns 1 while the job is still this delivery's and RUNNING, else 0 (e.g. cancelled).
local now, job_id, delivery, ttl_ms = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local h = redis.call('HMGET', K.job(job_id), 'status', 'delivery', 'qpu')
if h[1] ~= 'RUNNING' or h[2] ~= delivery then return 0 end
redis.call('ZADD', K.qpu_inflight(h[3]), 'XX', deadline_ms(now, ttl_ms), job_id)
redis.call('HSET', K.job(job_id), 'progress', ARGV[6])
return 1
