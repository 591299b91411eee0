-- Cancels a batch and every job of it that is not terminal yet (RUNNING ones too: their result
-- will be refused at commit). The QPU is released once no job of the batch is in flight.
-- ARGV[2] now (µs)
-- ARGV[3] batch id
-- ARGV[4] audit entry (JSON: actor, action, detail)
-- Returns {'ok'} | {'not_found'} | {'conflict', status}.
local now, batch_id = ARGV[2], ARGV[3]
local status, project_id = unpack(redis.call('HMGET', K.batch(batch_id), 'status', 'project_id'))
if not status then return {'not_found'} end
if TERMINAL_BATCH[status] then return {'conflict', status} end
cancel_unfinished_jobs(batch_id, now)
set_batch_open(batch_id, false, now)
set_batch_status(batch_id, status, 'CANCELED', now)
audit(ARGV[4], project_id, batch_id, now)
return {'ok'}
