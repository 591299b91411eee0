-- Replaces a batch's tags and their index entries.
-- KEYS[1] the batch
-- A.now: now (µs)
-- A.batch_id: batch id
-- A.tags: tags (JSON array of strings)
-- A.audit: audit entry (core/audit.py Audit.arg())
-- Returns {R.OK} | {R.NOT_FOUND, batch id}.
local batch, now, batch_id = KEYS[1], A.now, A.batch_id
local h = read_record(batch, 'batch', 'tags', 'created_us', 'project_id')
if not h.tags then return {R.NOT_FOUND, batch_id} end
for _, tag in ipairs(cjson.decode(h.tags)) do
  redis.call('ZREM', K.batch_index('tag', tag), batch_id)
end
for _, tag in ipairs(cjson.decode(A.tags)) do
  redis.call('ZADD', K.batch_index('tag', tag), h.created_us, batch_id)
end
redis.call('HSET', batch, 'tags', A.tags, 'updated_us', now)
audit(A.audit, h.project_id, batch_id, now)
return {R.OK}
