-- Drops the sequences of batches that finished before `cutoff` (Settings.input_retention_s ago):
-- the batch and job records, variables and results stay; the batch records when its inputs
-- went, and its project's stored bytes shrink by what they took. Idempotent: any scheduler may
-- run it, and a batch leaves the retention index with its sequences.
-- KEYS[1] the retention index
-- ARGV[2] now (µs)
-- ARGV[3] cutoff (µs)
-- ARGV[4] most batches per call
-- Also writes the batches and their projects' usage (K.*).
-- Returns the number of batches purged (data, no reply code).
local retention, now, cutoff, most = KEYS[1], ARGV[2], ARGV[3], ARGV[4]
local due = redis.call('ZRANGEBYSCORE', retention, '-inf', cutoff, 'LIMIT', 0, most)
for _, batch_id in ipairs(due) do
  local b = redis.call('HMGET', K.batch(batch_id), 'input_bytes', 'project_id')
  if b[2] then
    redis.call('DEL', K.batch_sequences(batch_id))
    redis.call('HDEL', K.batch(batch_id), 'sequence_builder', 'input_bytes')
    redis.call('HSET', K.batch(batch_id), 'inputs_purged_us', now)
    add_stored_bytes(b[2], -tonumber(b[1] or '0'))
  end
  redis.call('ZREM', retention, batch_id)
end
return #due
