-- Closes a batch: it takes no more jobs and ends DONE once its jobs are terminal.
-- Closing an already closed, unfinished batch is accepted (the SDK may retry).
-- ARGV[2] now (µs)
-- ARGV[3] batch id
-- Returns {'ok'} | {'not_found'} | {'conflict', status}.
local now, batch_id = ARGV[2], ARGV[3]
local status = redis.call('HGET', K.batch(batch_id), 'status')
if not status then return {'not_found'} end
if TERMINAL_BATCH[status] then return {'conflict', status} end
set_batch_open(batch_id, false, now)
finish_batch_if_complete(batch_id, now)
wake_scheduler()
return {'ok'}
