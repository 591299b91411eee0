-- One request of a token against its rate limit (GCRA: the key holds the theoretical arrival
-- time of the next request; a burst of `burst` requests fits, then one per `interval`).
-- ARGV[2] now (µs)
-- ARGV[3] token hash
-- ARGV[4] interval between requests at the sustained rate (µs)
-- ARGV[5] burst (requests)
-- Returns {'ok'} | {'limited', µs until the next request is allowed}.
local now, key = tonumber(ARGV[2]), K.rate(ARGV[3])
local interval, burst = tonumber(ARGV[4]), tonumber(ARGV[5])
local tat = math.max(tonumber(redis.call('GET', key) or '0'), now)
local allowed_at = tat + interval - interval * burst
if now < allowed_at then return {'limited', int(allowed_at - now)} end
local next_tat = tat + interval
-- The key is worth keeping only while it holds back a future request.
redis.call('SET', key, int(next_tat), 'PX', int(math.ceil((next_tat - now) / 1000)) + 1)
return {'ok'}
