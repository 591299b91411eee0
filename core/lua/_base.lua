-- Small helpers every other part uses: numbers as text, deadlines, the creation clock, waking the
-- scheduler, long argument lists.

-- The status a stale worker's reply names for a job that no longer exists.
local MISSING = 'MISSING'

-- Integers as decimal text. Lua numbers are doubles and tostring() writes 16-digit
-- microsecond timestamps in scientific notation, which nothing downstream can parse.
local function int(n)
  return string.format('%d', n)
end

-- A deadline in ms from `now` in µs (as received in ARGV) plus `ms`.
local function deadline_ms(now, ms)
  return int(math.floor(tonumber(now) / 1000) + ms)
end

local function wake_scheduler()
  redis.call('LPUSH', K.wakeup(), '1')
  redis.call('LTRIM', K.wakeup(), 0, 0)
end

-- Next creation timestamp (µs): never below `now`, always above the last one handed out, so
-- timestamps are unique and their order is creation order across the whole cluster.
local function next_created(now)
  local last = tonumber(redis.call('GET', K.clock()) or '0')
  local ts = int(math.max(tonumber(now), last + 1))
  redis.call('SET', K.clock(), ts)
  return ts
end

local function seconds_between(from_us, to_us)
  return (tonumber(to_us) - tonumber(from_us)) / 1000000
end

-- Runs one command on `key` with `args` appended, in slices: Lua's unpack() has a limit, and a
-- group (a chunk of jobs, a cancelled batch) may be large.
local function call_many(command, key, args)
  local slice = 1000
  for i = 1, #args, slice do
    redis.call(command, key, unpack(args, i, math.min(i + slice - 1, #args)))
  end
end

-- ARGV[from..] as a list: the field of a script's arguments that takes the rest of them
-- (core/script_args.py).
local function rest_argv(from)
  local out = {}
  for i = from, #ARGV do out[#out + 1] = ARGV[i] end
  return out
end

-- The fields `names` (a list, e.g. one of the prelude's FIELDS.*) of hash `key`, as a table by
-- name: records are read by field name on both sides (core/records.py).
local function hmget_named(key, names)
  local values = redis.call('HMGET', key, unpack(names))
  local out = {}
  for i, name in ipairs(names) do out[name] = values[i] end
  return out
end

-- The fields `...` of record `record` ('batch', 'job', 'project': FIELDS, core/records.py)
-- stored at `key`, as a table by name (a missing field is false). A name the record does not
-- have stops the script: a typo fails loudly instead of reading nil.
local function read_record(key, record, ...)
  local names, known = {...}, FIELDS[record]
  for _, name in ipairs(names) do
    if not known[name] then error('read_record: ' .. record .. ' has no field ' .. name) end
  end
  return hmget_named(key, names)
end
