-- The API's early look at an Idempotency-Key, before it validates a request: the commit
-- scripts check again, atomically (idempotent_replay in _idempotency.lua, the record's only reader).
-- KEYS[1] the Idempotency-Key's record
-- A.fingerprint: the request's fingerprint
-- Returns {R.OK} (a new key) | {R.REPLAY, batch id} | {R.KEY_REUSED}.
return idempotent_replay(KEYS[1], A.fingerprint) or {R.OK}
