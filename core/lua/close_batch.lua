-- Closes a batch: it takes no more jobs and ends DONE once its jobs are terminal.
-- Closing an already closed, unfinished batch is accepted (the SDK may retry).
-- KEYS[1] the batch
-- A.now: now (µs)
-- A.batch_id: batch id
-- A.audit: audit entry (core/audit.py Audit.arg())
-- Returns {R.OK} | {R.NOT_FOUND, batch id}
--       | {R.INVALID_TRANSITION, 'batch', batch id, status, DONE} for a finished batch.
local now, batch_id = A.now, A.batch_id
local status, project_id = unpack(redis.call('HMGET', KEYS[1], 'status', 'project_id'))
if not status then return {R.NOT_FOUND, batch_id} end
if TERMINAL_BATCH[status] then
  return {R.INVALID_TRANSITION, 'batch', batch_id, status, BATCH.DONE}
end
set_batch_open(batch_id, false, now)
finish_batch_if_complete(batch_id, now)
wake_scheduler()
audit(A.audit, project_id, batch_id, now)
return {R.OK}
