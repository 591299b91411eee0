-- The same fields of many hashes in one reply (the scheduler's snapshot of waiting batches):
-- one JSON document for the caller to parse, instead of a reply per hash. Writes nothing.
-- KEYS the hashes
-- A.fields: the fields (JSON array)
-- Returns a JSON array: per hash, its fields' values in order (false where missing).
local fields = cjson.decode(A.fields)
local rows = {}
for i, key in ipairs(KEYS) do
  rows[i] = redis.call('HMGET', key, unpack(fields))
end
-- cjson writes an empty table as {}: the caller reads it as no rows.
return cjson.encode(rows)
