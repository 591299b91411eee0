-- Extends a QPU lease if `token` still holds it at `epoch`.
-- ARGV[2] QPU name
-- ARGV[3] token
-- ARGV[4] epoch
-- ARGV[5] TTL (ms)
-- Returns 1 when renewed, 0 when the lease is lost.
local qpu, token, epoch, ttl_ms = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if not holds_lease(qpu, token, epoch) then return 0 end
redis.call('PEXPIRE', K.qpu_lease(qpu), ttl_ms)
return 1
