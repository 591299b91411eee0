-- A growing delay on wrong passwords for one (username, client address) pair: after `free`
-- failures, each further attempt of the pair waits 1 s, doubling per failure up to `max`. It
-- holds back one guesser, not the account: the user's own address has a pair of its own.
-- KEYS[1] the pair's failure record
-- ARGV[2] now (µs)
-- ARGV[3] 'check' (before the password is checked), 'failed' or 'succeeded' (after)
-- ARGV[4] failures allowed without delay
-- ARGV[5] longest delay (µs)
-- Returns {R.OK} | {R.LIMITED, µs until the pair may try again}.
local key, now, op = KEYS[1], tonumber(ARGV[2]), ARGV[3]
if op == 'succeeded' then
  redis.call('DEL', key)
  return {R.OK}
end
local h = redis.call('HMGET', key, 'failures', 'next_us')
if op == 'check' then
  local next_us = tonumber(h[2] or '0')
  if now < next_us then return {R.LIMITED, int(next_us - now)} end
  return {R.OK}
end
local failures, free, longest = tonumber(h[1] or '0') + 1, tonumber(ARGV[4]), tonumber(ARGV[5])
local delay = 0
if failures >= free then delay = math.min(1000000 * 2 ^ (failures - free), longest) end
redis.call('HSET', key, 'failures', failures, 'next_us', int(now + delay))
-- Forgotten once it has held nothing back for as long as the longest delay.
redis.call('PEXPIRE', key, int((delay + longest) / 1000) + 1)
return {R.OK}
