-- Adds jobs to an open batch that is still PENDING or RUNNING.
-- ARGV[2] now (µs)
-- ARGV[3] batch id
-- ARGV[4] jobs (JSON array of Job.creation_fields objects)
-- ARGV[5] idempotency key ('' for none), ARGV[6] request fingerprint, ARGV[7] its TTL (ms)
-- ARGV[8] audit entry (JSON: actor, action, detail)
-- ARGV[9] the jobs' own sequences, each once (JSON object: sha256 -> text)
-- ARGV[10] the project's stored-bytes limit unless it has its own ('0': none)
-- Returns {'ok', job created_us...} | {'replay', batch id} | {'key_reused'} | {'not_found'}
--       | {'conflict', status, open} | {'quota', name, limit, in use[, needed]}.
local now, batch_id = ARGV[2], ARGV[3]
local replay = idempotent_replay(ARGV[5], ARGV[6])
if replay then return replay end
local b = redis.call('HMGET', K.batch(batch_id), 'status', 'open', 'project_id')
if not b[1] then return {'not_found'} end
if b[2] ~= '1' or not (b[1] == 'PENDING' or b[1] == 'RUNNING') then
  return {'conflict', b[1], b[2]}
end
local jobs = cjson.decode(ARGV[4])
local sequences, sequence_bytes = new_sequences(batch_id, cjson.decode(ARGV[9]))
local bytes = sequence_bytes + jobs_bytes(jobs)
local refusal = quota_refusal(b[3], #jobs, false, bytes, ARGV[10])
if refusal then return refusal end
local stamps = create_jobs(jobs, batch_id, now)
store_sequences(batch_id, sequences, sequence_bytes)
add_stored_bytes(b[3], bytes)
redis.call('HSET', K.batch(batch_id), 'updated_us', now, 'activity_us', now)
remember_idempotent(ARGV[5], ARGV[6], batch_id, ARGV[7])
audit(ARGV[8], b[3], batch_id, now)
wake_scheduler()
table.insert(stamps, 1, 'ok')
return stamps
