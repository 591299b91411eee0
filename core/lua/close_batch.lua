-- Closes a batch: it takes no more jobs and ends DONE once its jobs are terminal.
-- Closing an already closed, unfinished batch is accepted (the SDK may retry).
-- ARGV[2] now (µs)
-- ARGV[3] batch id
-- ARGV[4] audit entry (JSON: actor, action, detail)
-- Returns {'ok'} | {'not_found'} | {'conflict', status}.
local now, batch_id = ARGV[2], ARGV[3]
local status, project_id = unpack(redis.call('HMGET', K.batch(batch_id), 'status', 'project_id'))
if not status then return {'not_found'} end
if TERMINAL_BATCH[status] then return {'conflict', status} end
set_batch_open(batch_id, false, now)
finish_batch_if_complete(batch_id, now)
wake_scheduler()
audit(ARGV[4], project_id, batch_id, now)
return {'ok'}
