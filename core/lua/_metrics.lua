-- What happened, counted in the step that made it happen (core/counters.py): counters, histograms,
-- the per-status totals.

-- What happened, counted in the step that made it happen (core/counters.py): a counter, a
-- histogram observation, and the current number of batches and jobs per device type and status.
local function count(name, labels, n)
  redis.call('HINCRBY', K.counters(), name .. ':' .. labels, n or 1)
end

-- Observations of one histogram under one label set, written once per bucket they fall in.
local function observe_all(name, labels, values)
  if #values == 0 then return end
  local bounds = HISTOGRAMS[name]
  local slots, sum = {}, 0
  for _, seconds in ipairs(values) do
    local slot = #bounds + 1
    for i, bound in ipairs(bounds) do
      if seconds <= bound then slot = i break end
    end
    slots[slot] = (slots[slot] or 0) + 1
    sum = sum + seconds
  end
  local field = name .. ':' .. labels .. ':'
  for slot, n in pairs(slots) do
    redis.call('HINCRBY', K.counters(), field .. slot, n)
  end
  redis.call('HINCRBYFLOAT', K.counters(), field .. 'sum', string.format('%.6f', sum))
end

local function observe(name, labels, seconds)
  observe_all(name, labels, {seconds})
end

local function move_total(kind, device_type, from, to, n)
  n = n or 1
  if from then redis.call('HINCRBY', K.totals(), kind .. ':' .. device_type .. ':' .. from, -n) end
  redis.call('HINCRBY', K.totals(), kind .. ':' .. device_type .. ':' .. to, n)
end

-- A project's batches per status: the exact total of a list filtered by project and status.
local function move_project_count(project_id, from, to)
  local counts = K.project_batch_counts(project_id)
  if from then redis.call('HINCRBY', counts, from, -1) end
  redis.call('HINCRBY', counts, to, 1)
end
