-- Creates a batch, its jobs and every index entry in one step; queues it for a QPU.
-- KEYS[1] the batch
-- ARGV[2] now (µs)
-- ARGV[3] batch fields (JSON object, core/records.py Batch.creation_fields)
-- ARGV[4] jobs (JSON array of Job.creation_fields objects)
-- ARGV[5] idempotency key ('' for none), ARGV[6] request fingerprint, ARGV[7] its TTL (ms)
-- ARGV[8] audit entry (core/audit.py Audit.arg())
-- ARGV[9] the jobs' own sequences, each once (JSON object: sha256 -> text)
-- ARGV[10] the project's stored-bytes limit unless it has its own ('0': none)
-- Also writes the jobs, the indexes, the queue and the project's usage (K.*).
-- Returns {R.CREATED, batch created_us, job created_us...} | {R.REPLAY, earlier batch id}
--       | {R.KEY_REUSED} | {R.QUOTA, project id, name, limit, in use[, needed]}.
local now = ARGV[2]
local fields = cjson.decode(ARGV[3])
local jobs = cjson.decode(ARGV[4])
local batch_id = fields['id']
local replay = idempotent_replay(ARGV[5], ARGV[6])
if replay then return replay end
local project_id = fields['project_id']
local sequences, sequence_bytes = new_sequences(batch_id, cjson.decode(ARGV[9]))
local bytes = BATCH_OVERHEAD_BYTES + fields_bytes(fields) + sequence_bytes + jobs_bytes(jobs)
local refusal = quota_refusal(project_id, #jobs, fields['open'] == '1', bytes, ARGV[10])
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
remember_idempotent(ARGV[5], ARGV[6], batch_id, ARGV[7])
audit(ARGV[8], project_id, batch_id, now)
wake_scheduler()
table.insert(stamps, 1, ts)
table.insert(stamps, 1, R.CREATED)
return stamps
