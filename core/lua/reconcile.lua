-- Recovers the QPU's in-flight jobs whose deadline passed: a dispatch no worker claimed goes
-- back to the head of the batch's queue; a RUNNING job whose worker stopped heart-beating is
-- queued again, or ends ERROR once it has started `max_attempts` times.
-- KEYS the QPU's lease, epoch, batch and in-flight keys (qpu_keys() in _queues.lua)
-- A.now: now (µs)
-- A.token: token
-- A.epoch: epoch
-- A.max_attempts: max attempts
-- Also writes the jobs and their batches (K.*).
-- Returns {R.OK, requeued count, failed count} | {R.FENCED}.
local now, token, epoch, max_attempts = A.now, A.token, A.epoch, tonumber(A.max_attempts)
local q = qpu_keys()
if not holds_lease(q, token, epoch) then return {R.FENCED} end
local expired = redis.call('ZRANGEBYSCORE', q.inflight, '-inf', deadline_ms(now, 0))
local requeue = {}
local failed = 0
for _, job_id in ipairs(expired) do
  redis.call('ZREM', q.inflight, job_id)
  local h = read_record(K.job(job_id), 'job', 'status', 'batch_id', 'attempts', 'created_us')
  local status, batch_id, attempts = h.status, h.batch_id, tonumber(h.attempts or '0')
  if status == JOB.RUNNING and attempts >= max_attempts then
    local msg = 'The worker running this job was lost ' .. attempts .. ' times; giving up.'
    set_job_errors(job_id, cjson.encode({msg}))
    set_job_status(job_id, batch_id, JOB.RUNNING, JOB.ERROR, now)
    finish_batch_if_complete(batch_id, now)
    failed = failed + 1
  elseif status == JOB.RUNNING or status == JOB.PENDING then
    if status == JOB.RUNNING then set_job_status(job_id, batch_id, JOB.RUNNING, JOB.PENDING, now) end
    -- A fresh dispatch (new delivery id) makes any late claim or commit of the old one stale.
    redis.call('HDEL', K.job(job_id), 'delivery')
    table.insert(requeue,
      {created = tonumber(h.created_us), job_id = job_id, batch_id = batch_id})
  end
end
-- Back to the head of their queue, earliest created first, so creation order holds.
table.sort(requeue, function(a, b) return a.created > b.created end)
for _, item in ipairs(requeue) do
  redis.call('LPUSH', K.batch_pending(item.batch_id), item.job_id)
end
if #expired > 0 then wake_scheduler() end
return {R.OK, #requeue, failed}
