-- Cancels the given jobs of one batch; each one that is already terminal (or not of this batch)
-- is reported instead. A closed batch left with no active job ends DONE.
-- ARGV[2] now (µs)
-- ARGV[3] batch id
-- ARGV[4] job ids (JSON array)
-- ARGV[5] audit entry (JSON: actor, action, detail)
-- Returns {'ok', canceled ids (JSON array), errors (JSON object id -> reason)} | {'not_found'}.
local now, batch_id = ARGV[2], ARGV[3]
local project_id = redis.call('HGET', K.batch(batch_id), 'project_id')
if not project_id then return {'not_found'} end
local canceled, errors = {}, {}
for _, job_id in ipairs(cjson.decode(ARGV[4])) do
  local h = redis.call('HMGET', K.job(job_id), 'status', 'batch_id')
  if h[2] ~= batch_id then
    errors[job_id] = 'Job not found in batch ' .. batch_id
  elseif TERMINAL_JOB[h[1]] then
    errors[job_id] = 'Job in status ' .. h[1] .. ' cannot be cancelled'
  else
    set_job_status(job_id, batch_id, h[1], 'CANCELED', now)
    table.insert(canceled, job_id)
  end
end
if #canceled > 0 then
  finish_batch_if_complete(batch_id, now)
  wake_scheduler()
  audit(ARGV[5], project_id, batch_id, now)
end
-- cjson writes an empty table as {}; the canceled list is rebuilt in Python from ids anyway.
return {'ok', cjson.encode(canceled), cjson.encode(errors)}
