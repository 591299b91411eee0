-- One request of a token against its rate limit (GCRA: the key holds the theoretical arrival
-- time of the next request; a burst of `burst` requests fits, then one per `interval`).
-- KEYS[1] the token's rate record
-- A.now: now (µs)
-- A.interval_us: interval between requests at the sustained rate (µs)
-- A.burst: burst (requests)
-- Returns {R.OK} | {R.LIMITED, µs until the next request is allowed}.
-- The state lives in memory only: it is not written to the AOF (nor to replicas), so a request
-- that only reads never waits for the disk's fsync; after a Redis restart every token starts
-- with a fresh burst. One Redis still holds it for every API process: the limit is exact.
redis.set_repl(redis.REPL_NONE)
local key, now = KEYS[1], tonumber(A.now)
local interval, burst = tonumber(A.interval_us), tonumber(A.burst)
local tat = math.max(tonumber(redis.call('GET', key) or '0'), now)
local allowed_at = tat + interval - interval * burst
if now < allowed_at then return {R.LIMITED, int(allowed_at - now)} end
local next_tat = tat + interval
-- The key is worth keeping only while it holds back a future request.
redis.call('SET', key, int(next_tat), 'PX', int(math.ceil((next_tat - now) / 1000)) + 1)
return {R.OK}
