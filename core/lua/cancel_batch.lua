-- Cancels batches and every job of them that is not terminal yet (RUNNING ones too: their result
-- will be refused at commit), all in this one step: a request to cancel several batches commits
-- all it can or, if Redis fails, none (it cannot stop half-way). Each QPU is released once no
-- job of its batch is in flight.
-- ARGV[2] now (µs)
-- ARGV[3] batch ids (JSON array)
-- ARGV[4] audit entry (JSON: actor, action, detail), recorded for each batch cancelled
-- Returns {batch id, outcome, ...} in the given order; outcome 'ok' | 'not_found' | the status
-- of a batch that was already finished.
local now = ARGV[2]
local out = {}
for _, batch_id in ipairs(cjson.decode(ARGV[3])) do
  local status, project_id = unpack(redis.call('HMGET', K.batch(batch_id), 'status', 'project_id'))
  local outcome = 'ok'
  if not status then
    outcome = 'not_found'
  elseif TERMINAL_BATCH[status] then
    outcome = status
  else
    cancel_unfinished_jobs(batch_id, now)
    set_batch_open(batch_id, false, now)
    set_batch_status(batch_id, status, 'CANCELED', now)
    audit(ARGV[4], project_id, batch_id, now)
  end
  table.insert(out, batch_id)
  table.insert(out, outcome)
end
return out
