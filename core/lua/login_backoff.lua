-- A growing delay on wrong passwords for one (username, client address) pair: after `free`
-- failures, each further attempt of the pair waits 1 s, doubling per failure up to `max`. It
-- holds back one guesser, not the account: the user's own address has a pair of its own.
-- KEYS[1] the pair's failure record
-- A.now: now (µs)
-- A.step: LOGIN.CHECK (before the password is checked), LOGIN.FAILED or LOGIN.SUCCEEDED
-- A.free_failures: failures allowed without delay
-- A.max_delay_us: longest delay (µs)
-- Returns {R.OK} | {R.LIMITED, µs until the pair may try again}.
local key, now, op = KEYS[1], tonumber(A.now), A.step
if op == LOGIN.SUCCEEDED then
  redis.call('DEL', key)
  return {R.OK}
end
local h = read_record(key, 'login', 'failures', 'next_us')
if op == LOGIN.CHECK then
  local next_us = tonumber(h.next_us or '0')
  if now < next_us then return {R.LIMITED, int(next_us - now)} end
  return {R.OK}
end
local failures = tonumber(h.failures or '0') + 1
local free, longest = tonumber(A.free_failures), tonumber(A.max_delay_us)
local delay = 0
if failures >= free then delay = math.min(1000000 * 2 ^ (failures - free), longest) end
redis.call('HSET', key, 'failures', failures, 'next_us', int(now + delay))
-- Forgotten once it has held nothing back for as long as the longest delay.
redis.call('PEXPIRE', key, int((delay + longest) / 1000) + 1)
return {R.OK}
