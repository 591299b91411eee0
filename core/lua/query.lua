-- Filters and pages a set of ids through the indexes, never reading the records themselves.
-- KEYS none: the query names its index keys (core/store.py builds them with core/keys.py).
-- A.query: query (JSON object):
--   base    key of the zset holding every candidate (scored by creation time)
--   groups  list of lists of index keys: a record must be in one key of every group
--   ids     optional list of ids the record must be one of
--   runs    optional [min, max] bounds on runs (jobs only), with runs_key its index
--   min, max  creation-time bounds (µs, inclusive; '-inf'/'+inf' for none)
--   offset, limit, desc  the page
--   tmp     prefix for temporary keys (deleted before returning)
--   counts  optional list of [hash, field] whose values sum to the exact total (a project's
--           batches per status), so the total costs nothing however many match
-- Returns {total, id...} (data, no reply code).
-- Its temporary keys never reach the AOF (they are gone when it returns): a list waits for no
-- fsync.
redis.set_repl(redis.REPL_NONE)
local q = cjson.decode(A.query)
local temps = {}
local function temp()
  local key = q.tmp .. ':' .. (#temps + 1)
  table.insert(temps, key)
  return key
end

-- Fast path, the common cases: every filter one index value (the total is ZINTERCARD), or
-- projects and statuses whose counts give the total (`counts`; the filter may then be a union
-- of several projects or statuses). No ids, runs or time bounds. The page walks one index in
-- creation order, the smallest single-value filter or else every batch, keeping the ids that
-- every other filter holds (one of its values, for a union). Its cost grows with the page (and
-- with how sparse the matches are), not with the number of matches; nothing is written.
local function counted_total()
  if not q.counts then return nil end
  local n = 0
  for _, pair in ipairs(q.counts) do
    n = n + tonumber(redis.call('HGET', pair[1], pair[2]) or '0')
  end
  return n
end

local function in_any(keys, id)
  for _, key in ipairs(keys) do
    if redis.call('ZSCORE', key, id) then return true end
  end
  return false
end

local function simple_query()
  if q.ids or q.runs or q.min ~= '-inf' or q.max ~= '+inf' then return nil end
  local singles, unions = {}, {}
  for _, group in ipairs(q.groups) do
    table.insert(#group == 1 and singles or unions, group)
  end
  local total = counted_total()
  if #unions > 0 and not total then return nil end
  local sizes = {}
  for _, group in ipairs(singles) do sizes[group[1]] = redis.call('ZCARD', group[1]) end
  table.sort(singles, function(a, b) return sizes[a[1]] < sizes[b[1]] end)
  local driver = singles[1] and singles[1][1] or q.base
  sizes[driver] = sizes[driver] or redis.call('ZCARD', driver)
  local others = {}
  for i = 2, #singles do table.insert(others, singles[i]) end
  for _, group in ipairs(unions) do table.insert(others, group) end
  if not total then
    local keys = {driver}
    for _, group in ipairs(others) do table.insert(keys, group[1]) end
    total = #keys == 1 and sizes[driver] or redis.call('ZINTERCARD', #keys, unpack(keys))
  end
  local page, skip = {total}, tonumber(q.offset)
  local want, chunk = tonumber(q.limit), math.max(tonumber(q.limit), 100)
  local rank = 0
  while #page - 1 < want and skip + #page - 1 < total and rank < sizes[driver] do
    local ids = q.desc and redis.call('ZRANGE', driver, rank, rank + chunk - 1, 'REV')
      or redis.call('ZRANGE', driver, rank, rank + chunk - 1)
    rank = rank + chunk
    for _, id in ipairs(ids) do
      local everywhere = true
      for _, group in ipairs(others) do
        if not in_any(group, id) then everywhere = false break end
      end
      if everywhere then
        if skip > 0 then skip = skip - 1 elseif #page - 1 < want then table.insert(page, id) end
      end
    end
  end
  return page
end
local fast = simple_query()
if fast then return fast end

local sets, weights = {q.base}, {1}
for _, group in ipairs(q.groups) do
  if #group == 1 then
    table.insert(sets, group[1])
  else
    local key = temp()
    redis.call('ZUNIONSTORE', key, #group, unpack(group))
    table.insert(sets, key)
  end
  table.insert(weights, 1)
end
if q.ids then
  local key = temp()
  for _, id in ipairs(q.ids) do
    local score = redis.call('ZSCORE', q.base, id)
    if score then redis.call('ZADD', key, score, id) end
  end
  table.insert(sets, key)
  table.insert(weights, 1)
end
if q.runs then
  local key = temp()
  redis.call('ZRANGESTORE', key, q.runs_key, q.runs[1], q.runs[2], 'BYSCORE')
  table.insert(sets, key)
  -- runs are scores of that set: weight 0 and MAX keep the creation time as the score.
  table.insert(weights, 0)
end

local result = q.base
if #sets > 1 then
  result = temp()
  local args = {'ZINTERSTORE', result, #sets}
  for _, key in ipairs(sets) do table.insert(args, key) end
  table.insert(args, 'WEIGHTS')
  for _, w in ipairs(weights) do table.insert(args, w) end
  table.insert(args, 'AGGREGATE')
  table.insert(args, 'MAX')
  redis.call(unpack(args))
end

local total = counted_total() or redis.call('ZCOUNT', result, q.min, q.max)
local page
if q.desc then
  page = redis.call('ZRANGE', result, q.max, q.min, 'BYSCORE', 'REV', 'LIMIT', q.offset, q.limit)
else
  page = redis.call('ZRANGE', result, q.min, q.max, 'BYSCORE', 'LIMIT', q.offset, q.limit)
end
if #temps > 0 then redis.call('DEL', unpack(temps)) end
table.insert(page, 1, total)
return page
