-- Extends a QPU lease if `token` still holds it at `epoch`.
-- KEYS the QPU's lease, epoch, batch and in-flight keys (qpu_keys() in _queues.lua)
-- A.token: token
-- A.epoch: epoch
-- A.ttl_ms: TTL (ms)
-- Returns {R.OK} when renewed | {R.FENCED} when the lease is lost.
local token, epoch, ttl_ms = A.token, A.epoch, A.ttl_ms
local q = qpu_keys()
if not holds_lease(q, token, epoch) then return {R.FENCED} end
redis.call('PEXPIRE', q.lease, ttl_ms)
return {R.OK}
