-- Replaces a batch's tags and their index entries.
-- KEYS[1] the batch
-- ARGV[2] now (µs)
-- ARGV[3] batch id
-- ARGV[4] tags (JSON array of strings)
-- ARGV[5] audit entry (core/audit.py Audit.arg())
-- Returns {R.OK} | {R.NOT_FOUND, batch id}.
local batch, now, batch_id = KEYS[1], ARGV[2], ARGV[3]
local h = redis.call('HMGET', batch, 'tags', 'created_us', 'project_id')
if not h[1] then return {R.NOT_FOUND, batch_id} end
for _, tag in ipairs(cjson.decode(h[1])) do
  redis.call('ZREM', K.batch_index('tag', tag), batch_id)
end
for _, tag in ipairs(cjson.decode(ARGV[4])) do
  redis.call('ZADD', K.batch_index('tag', tag), h[2], batch_id)
end
redis.call('HSET', batch, 'tags', ARGV[4], 'updated_us', now)
audit(ARGV[5], h[3], batch_id, now)
return {R.OK}
