-- Cancels the given jobs of one batch; each one that is already terminal (or not of this batch)
-- is reported instead. A closed batch left with no active job ends DONE.
-- KEYS[1] the batch
-- A.now: now (µs)
-- A.batch_id: batch id
-- A.job_ids: job ids (JSON array)
-- A.audit: audit entry (core/audit.py Audit.arg())
-- Also writes the jobs and their indexes (K.*).
-- Returns {R.OK, refused (JSON object: job id -> why)} | {R.NOT_FOUND, batch id}.
local now, batch_id = A.now, A.batch_id
local project_id = redis.call('HGET', KEYS[1], 'project_id')
if not project_id then return {R.NOT_FOUND, batch_id} end
local canceled, refused = 0, {}
for _, job_id in ipairs(cjson.decode(A.job_ids)) do
  local h = read_record(K.job(job_id), 'job', 'status', 'batch_id')
  if h.batch_id ~= batch_id then
    refused[job_id] = 'Job not found in batch ' .. batch_id
  elseif TERMINAL_JOB[h.status] then
    refused[job_id] = 'Job in status ' .. h.status .. ' cannot be cancelled'
  else
    set_job_status(job_id, batch_id, h.status, JOB.CANCELED, now)
    canceled = canceled + 1
  end
end
if canceled > 0 then
  finish_batch_if_complete(batch_id, now)
  wake_scheduler()
  audit(A.audit, project_id, batch_id, now)
end
-- cjson writes an empty table as {}, which core/replies.py reads as no refusal.
return {R.OK, cjson.encode(refused)}
