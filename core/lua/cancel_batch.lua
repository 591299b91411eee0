-- Cancels batches and every job of them that is not terminal yet (RUNNING ones too: their result
-- will be refused at commit), all in this one step: a request to cancel several batches commits
-- all it can or, if Redis fails, none (it cannot stop half-way). Each QPU is released once no
-- job of its batch is in flight.
-- KEYS the batches, in the order of A.batch_ids
-- A.now: now (µs)
-- A.batch_ids: batch ids (JSON array)
-- A.audit: audit entry (core/audit.py Audit.arg()), recorded for each batch cancelled
-- Also writes the batches' jobs, indexes and queues (K.*).
-- Returns one reply per batch, in order, each as JSON: {R.OK} | {R.NOT_FOUND, batch id}
--       | {R.INVALID_TRANSITION, 'batch', batch id, status, CANCELED} for a finished batch.
local now = A.now
local out = {}
for i, batch_id in ipairs(cjson.decode(A.batch_ids)) do
  local status, project_id = unpack(redis.call('HMGET', KEYS[i], 'status', 'project_id'))
  local reply = {R.OK}
  if not status then
    reply = {R.NOT_FOUND, batch_id}
  elseif TERMINAL_BATCH[status] then
    reply = {R.INVALID_TRANSITION, 'batch', batch_id, status, BATCH.CANCELED}
  else
    cancel_unfinished_jobs(batch_id, now)
    set_batch_status(batch_id, status, BATCH.CANCELED, now)
    audit(A.audit, project_id, batch_id, now)
  end
  table.insert(out, cjson.encode(reply))
end
return out
