-- Drops the sequences of batches that finished before `cutoff` (Settings.input_retention_s ago):
-- the batch and job records, variables and results stay; the batch records when its inputs
-- went, and its project's stored bytes shrink by what they took. Idempotent: any scheduler may
-- run it, and a batch leaves the retention index with its sequences.
-- KEYS[1] the retention index
-- A.now: now (µs)
-- A.cutoff_us: cutoff (µs)
-- A.most: most batches per call
-- Also writes the batches and their projects' usage (K.*).
-- Returns the number of batches purged (data, no reply code).
local retention, now, cutoff, most = KEYS[1], A.now, A.cutoff_us, A.most
local due = redis.call('ZRANGEBYSCORE', retention, '-inf', cutoff, 'LIMIT', 0, most)
for _, batch_id in ipairs(due) do
  local b = read_record(K.batch(batch_id), 'batch', 'input_bytes', 'project_id')
  if b.project_id then
    redis.call('DEL', K.batch_sequences(batch_id))
    redis.call('HDEL', K.batch(batch_id), 'sequence_builder', 'input_bytes')
    redis.call('HSET', K.batch(batch_id), 'inputs_purged_us', now)
    add_stored_bytes(b.project_id, -tonumber(b.input_bytes or '0'))
  end
  redis.call('ZREM', retention, batch_id)
end
return #due
