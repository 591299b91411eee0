-- Pushes back the in-flight deadlines of the running jobs of one delivery while their worker is
-- alive, and records how many shots the one running now has done.
-- KEYS the jobs
-- A.now: now (µs)
-- A.delivery: delivery id
-- A.ttl_ms: heartbeat TTL (ms)
-- A.current: the job running now ('' for none)
-- A.shots_done: its shots done so far
-- A.job_ids: the delivery's jobs not committed yet
-- Also writes their QPU's in-flight set (K.*).
-- Returns {R.OK, job id, status or 'MISSING', ...}: the jobs no longer this delivery's and
-- RUNNING (e.g. cancelled: the worker aborts or skips them).
local now, delivery, ttl_ms, current = A.now, A.delivery, tonumber(A.ttl_ms), A.current
local stale, deadlines = {R.OK}, {}
local qpu
local deadline = deadline_ms(now, ttl_ms)
for _, job_id in ipairs(A.job_ids) do
  local h = read_record(K.job(job_id), 'job', 'status', 'delivery', 'qpu')
  if h.status ~= JOB.RUNNING or h.delivery ~= delivery then
    table.insert(stale, job_id)
    table.insert(stale, h.status or MISSING)
  else
    qpu = h.qpu
    table.insert(deadlines, deadline)
    table.insert(deadlines, job_id)
    if job_id == current then redis.call('HSET', K.job(job_id), 'progress', A.shots_done) end
  end
end
if qpu then redis.call('ZADD', K.qpu_inflight(qpu), 'XX', unpack(deadlines)) end
return stale
