-- Creates a batch, its jobs and every index entry in one step; queues it for a QPU.
-- KEYS[1] the batch
-- A.now: now (µs)
-- A.batch: batch fields (JSON object, core/records.py Batch.creation_fields)
-- A.jobs: jobs (JSON array of Job.creation_fields objects)
-- A.idempotency_key: the Idempotency-Key's record ('' for none)
-- A.fingerprint: the request's fingerprint
-- A.idempotency_ttl_ms: the record's TTL
-- A.audit: audit entry (core/audit.py Audit.arg())
-- A.sequences: the jobs' own sequences, each once (JSON object: sha256 -> text)
-- A.max_stored_bytes: the project's stored-bytes limit unless it has its own ('0': none)
-- Also writes the jobs, the indexes, the queue and the project's usage (K.*).
-- Returns {R.CREATED, batch created_us, job created_us...} | {R.REPLAY, earlier batch id}
--       | {R.KEY_REUSED} | {R.QUOTA, project id, name, limit, in use[, needed]}.
local now = A.now
local fields = cjson.decode(A.batch)
local jobs = cjson.decode(A.jobs)
local batch_id = fields['id']
local replay = idempotent_replay(A.idempotency_key, A.fingerprint)
if replay then return replay end
local project_id = fields['project_id']
local sequences, sequence_bytes = new_sequences(batch_id, cjson.decode(A.sequences))
local bytes = BATCH_OVERHEAD_BYTES + fields_bytes(fields) + sequence_bytes + jobs_bytes(jobs)
local refusal = quota_refusal(project_id, #jobs, fields['open'] == '1', bytes, A.max_stored_bytes)
if refusal then return refusal end
local batch = KEYS[1]

local ts = next_created(now)
for name, value in pairs(fields) do
  redis.call('HSET', batch, name, value)
end
redis.call('HSET', batch, 'created_us', ts, 'updated_us', ts, 'activity_us', ts)
for _, status in ipairs(JOB_STATUSES) do
  redis.call('HSET', K.batch_counts(batch_id), status, 0)
end

redis.call('ZADD', K.all_batches(), ts, batch_id)
for _, field in ipairs({'project_id', 'user_id', 'device_type', 'status', 'open', 'queue_priority'}) do
  redis.call('ZADD', K.batch_index(field, fields[field]), ts, batch_id)
end
for _, tag in ipairs(cjson.decode(fields['tags'])) do
  redis.call('ZADD', K.batch_index('tag', tag), ts, batch_id)
end
enqueue_batch(batch_id, fields['device_type'], fields['queue_priority'], project_id, ts)
move_total('batch', fields['device_type'], nil, fields['status'])
move_project_count(project_id, nil, fields['status'])
if fields['open'] == '1' then
  redis.call('SADD', K.project_open_batches(project_id), batch_id)
end

local stamps = create_jobs(jobs, batch_id, now)
store_sequences(batch_id, sequences, sequence_bytes + #(fields['sequence_builder'] or ''))
add_stored_bytes(project_id, bytes)
remember_idempotent(A.idempotency_key, A.fingerprint, batch_id, A.idempotency_ttl_ms)
audit(A.audit, project_id, batch_id, now)
wake_scheduler()
table.insert(stamps, 1, ts)
table.insert(stamps, 1, R.CREATED)
return stamps
