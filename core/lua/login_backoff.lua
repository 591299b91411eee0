-- A growing delay on wrong passwords for one (username, client address) pair: after `free`
-- failures, each further attempt of the pair waits 1 s, doubling per failure up to `max`. It
-- holds back one guesser, not the account: the user's own address has a pair of its own.
-- ARGV[2] now (µs)
-- ARGV[3] hash of the pair
-- ARGV[4] 'check' (before the password is checked), 'failed' or 'succeeded' (after)
-- ARGV[5] failures allowed without delay
-- ARGV[6] longest delay (µs)
-- Returns {'ok'} | {'wait', µs until the pair may try again}.
local now, key, op = tonumber(ARGV[2]), K.login_failures(ARGV[3]), ARGV[4]
if op == 'succeeded' then
  redis.call('DEL', key)
  return {'ok'}
end
local h = redis.call('HMGET', key, 'failures', 'next_us')
if op == 'check' then
  local next_us = tonumber(h[2] or '0')
  if now < next_us then return {'wait', int(next_us - now)} end
  return {'ok'}
end
local failures, free, longest = tonumber(h[1] or '0') + 1, tonumber(ARGV[5]), tonumber(ARGV[6])
local delay = 0
if failures >= free then delay = math.min(1000000 * 2 ^ (failures - free), longest) end
redis.call('HSET', key, 'failures', failures, 'next_us', int(now + delay))
-- Forgotten once it has held nothing back for as long as the longest delay.
redis.call('PEXPIRE', key, int((delay + longest) / 1000) + 1)
return {'ok'}
