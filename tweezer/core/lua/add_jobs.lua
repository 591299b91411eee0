-- Adds jobs to an open batch (a finished batch is always closed).
-- KEYS[1] the batch
-- ARGV[2] now (µs)
-- ARGV[3] batch id
-- ARGV[4] jobs (JSON array of Job.creation_fields objects)
-- ARGV[5] idempotency key ('' for none), ARGV[6] request fingerprint, ARGV[7] its TTL (ms)
-- ARGV[8] audit entry (core/audit.py Audit.arg())
-- ARGV[9] the jobs' own sequences, each once (JSON object: sha256 -> text)
-- ARGV[10] the project's stored-bytes limit unless it has its own ('0': none)
-- Also writes the jobs, their indexes and the project's usage (K.*).
-- Returns {R.OK, job created_us...} | {R.REPLAY, batch id} | {R.KEY_REUSED}
--       | {R.NOT_FOUND, batch id} | {R.CLOSED, batch id, status} | {R.QUOTA, ...}.
local batch, now, batch_id = KEYS[1], ARGV[2], ARGV[3]
local replay = idempotent_replay(ARGV[5], ARGV[6])
if replay then return replay end
local b = redis.call('HMGET', batch, 'status', 'open', 'project_id')
if not b[1] then return {R.NOT_FOUND, batch_id} end
if b[2] ~= '1' then return {R.CLOSED, batch_id, b[1]} end
local jobs = cjson.decode(ARGV[4])
local sequences, sequence_bytes = new_sequences(batch_id, cjson.decode(ARGV[9]))
local bytes = sequence_bytes + jobs_bytes(jobs)
local refusal = quota_refusal(b[3], #jobs, false, bytes, ARGV[10])
if refusal then return refusal end
local stamps = create_jobs(jobs, batch_id, now)
store_sequences(batch_id, sequences, sequence_bytes)
add_stored_bytes(b[3], bytes)
redis.call('HSET', batch, 'updated_us', now, 'activity_us', now)
remember_idempotent(ARGV[5], ARGV[6], batch_id, ARGV[7])
audit(ARGV[8], b[3], batch_id, now)
wake_scheduler()
table.insert(stamps, 1, R.OK)
return stamps
