-- Recovers the QPU's in-flight jobs whose deadline passed: a dispatch no worker claimed goes
-- back to the head of the batch's queue; a RUNNING job whose worker stopped heart-beating is
-- queued again, or ends ERROR once it has started `max_attempts` times.
-- ARGV[2] now (µs)
-- ARGV[3] QPU name
-- ARGV[4] token
-- ARGV[5] epoch
-- ARGV[6] max attempts
-- Returns {'ok', requeued count, failed count} | {'fenced'}.
local now, qpu, token, epoch = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local max_attempts = tonumber(ARGV[6])
if not holds_lease(qpu, token, epoch) then return {'fenced'} end
local inflight = K.qpu_inflight(qpu)
local expired = redis.call('ZRANGEBYSCORE', inflight, '-inf', deadline_ms(now, 0))
local requeue = {}
local failed = 0
for _, job_id in ipairs(expired) do
  redis.call('ZREM', inflight, job_id)
  local h = redis.call('HMGET', K.job(job_id), 'status', 'batch_id', 'attempts', 'created_us')
  local status, batch_id, attempts = h[1], h[2], tonumber(h[3] or '0')
  if status == 'RUNNING' and attempts >= max_attempts then
    local msg = 'The worker running this job was lost ' .. attempts .. ' times; giving up.'
    redis.call('HSET', K.job(job_id), 'errors', cjson.encode({msg}))
    redis.call('ZREM', K.job_index('errors', '0'), job_id)
    redis.call('ZADD', K.job_index('errors', '1'), h[4], job_id)
    set_job_status(job_id, batch_id, 'RUNNING', 'ERROR', now)
    finish_batch_if_complete(batch_id, now)
    failed = failed + 1
  elseif status == 'RUNNING' or status == 'PENDING' then
    if status == 'RUNNING' then set_job_status(job_id, batch_id, 'RUNNING', 'PENDING', now) end
    -- A fresh dispatch (new delivery id) makes any late claim or commit of the old one stale.
    redis.call('HDEL', K.job(job_id), 'delivery')
    table.insert(requeue, {tonumber(h[4]), job_id, batch_id})
  end
end
-- Back to the head of their queue, earliest created first, so creation order holds.
table.sort(requeue, function(a, b) return a[1] > b[1] end)
for _, item in ipairs(requeue) do
  redis.call('LPUSH', K.batch_pending(item[3]), item[2])
end
if #expired > 0 then wake_scheduler() end
return {'ok', #requeue, failed}
