-- Pushes back the in-flight deadlines of the running jobs of one delivery while their worker is
-- alive, and records how many shots the one running now has done.
-- KEYS the jobs
-- ARGV[2] now (µs)
-- ARGV[3] delivery id
-- ARGV[4] heartbeat TTL (ms)
-- ARGV[5] the job running now ('' for none)
-- ARGV[6] its shots done so far
-- ARGV[7..] the delivery's jobs not committed yet
-- Also writes their QPU's in-flight set (K.*).
-- Returns {R.OK, job id, status or 'MISSING', ...}: the jobs no longer this delivery's and
-- RUNNING (e.g. cancelled: the worker aborts or skips them).
local now, delivery, ttl_ms, current = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local stale, deadlines = {R.OK}, {}
local qpu
local deadline = deadline_ms(now, ttl_ms)
for i = 7, #ARGV do
  local job_id = ARGV[i]
  local h = redis.call('HMGET', K.job(job_id), 'status', 'delivery', 'qpu')
  if h[1] ~= JOB.RUNNING or h[2] ~= delivery then
    table.insert(stale, job_id)
    table.insert(stale, h[1] or MISSING)
  else
    qpu = h[3]
    table.insert(deadlines, deadline)
    table.insert(deadlines, job_id)
    if job_id == current then redis.call('HSET', K.job(job_id), 'progress', ARGV[6]) end
  end
end
if qpu then redis.call('ZADD', K.qpu_inflight(qpu), 'XX', unpack(deadlines)) end
return stale
