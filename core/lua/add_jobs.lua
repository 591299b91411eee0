-- Adds jobs to an open batch (a finished batch is always closed).
-- KEYS[1] the batch
-- A.now: now (µs)
-- A.batch_id: batch id
-- A.jobs: jobs (JSON array of Job.creation_fields objects)
-- A.idempotency_key: the Idempotency-Key's record ('' for none)
-- A.fingerprint: the request's fingerprint
-- A.idempotency_ttl_ms: the record's TTL
-- A.audit: audit entry (core/audit.py Audit.arg())
-- A.sequences: the jobs' own sequences, each once (JSON object: sha256 -> text)
-- A.max_stored_bytes: the project's stored-bytes limit unless it has its own ('0': none)
-- Also writes the jobs, their indexes and the project's usage (K.*).
-- Returns {R.OK, job created_us...} | {R.REPLAY, batch id} | {R.KEY_REUSED}
--       | {R.NOT_FOUND, batch id} | {R.CLOSED, batch id, status} | {R.QUOTA, ...}.
local batch, now, batch_id = KEYS[1], A.now, A.batch_id
local replay = idempotent_replay(A.idempotency_key, A.fingerprint)
if replay then return replay end
local b = read_record(batch, 'batch', 'status', 'open', 'project_id')
if not b.status then return {R.NOT_FOUND, batch_id} end
if b.open ~= '1' then return {R.CLOSED, batch_id, b.status} end
local jobs = cjson.decode(A.jobs)
local sequences, sequence_bytes = new_sequences(batch_id, cjson.decode(A.sequences))
local bytes = sequence_bytes + jobs_bytes(jobs)
local refusal = quota_refusal(b.project_id, #jobs, false, bytes, A.max_stored_bytes)
if refusal then return refusal end
local stamps = create_jobs(jobs, batch_id, now)
store_sequences(batch_id, sequences, sequence_bytes)
add_stored_bytes(b.project_id, bytes)
redis.call('HSET', batch, 'updated_us', now, 'activity_us', now)
remember_idempotent(A.idempotency_key, A.fingerprint, batch_id, A.idempotency_ttl_ms)
audit(A.audit, b.project_id, batch_id, now)
wake_scheduler()
table.insert(stamps, 1, R.OK)
return stamps
