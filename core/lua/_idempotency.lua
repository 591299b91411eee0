-- Idempotency-Keys: the only reader and writer of their records.

-- Idempotency-Key: the first commit under a key records what it created, in the same script,
-- so a retried POST finds it instead of creating again. `key` is '' when the request had none.
-- The only reader and writer of the record (the API's early check is idempotency_check.lua).
local function idempotent_replay(key, fingerprint)
  if key == '' then return nil end
  local seen = redis.call('GET', key)
  if not seen then return nil end
  local record = cjson.decode(seen)
  if record['fingerprint'] ~= fingerprint then return {R.KEY_REUSED} end
  return {R.REPLAY, record['batch_id']}
end

local function remember_idempotent(key, fingerprint, batch_id, ttl_ms)
  if key == '' then return end
  local record = cjson.encode({fingerprint = fingerprint, batch_id = batch_id})
  redis.call('SET', key, record, 'PX', ttl_ms)
end
