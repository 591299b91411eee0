-- Extends a QPU lease if `token` still holds it at `epoch`.
-- KEYS the QPU's lease, epoch, batch and in-flight keys (qpu_keys() in _lib.lua)
-- ARGV[2] token
-- ARGV[3] epoch
-- ARGV[4] TTL (ms)
-- Returns {R.OK} when renewed | {R.FENCED} when the lease is lost.
local token, epoch, ttl_ms = ARGV[2], ARGV[3], ARGV[4]
local q = qpu_keys()
if not holds_lease(q, token, epoch) then return {R.FENCED} end
redis.call('PEXPIRE', q.lease, ttl_ms)
return {R.OK}
