-- The effective status of each given device type (see device_status in _queues.lua).
-- KEYS none: a device type's status and calibration keys come from K.* (two per type).
-- A.now: now (µs)
-- A.device_types: device types
-- Returns one status per device type, in order (data, no reply code).
local out = {}
for _, device_type in ipairs(A.device_types) do
  table.insert(out, device_status(device_type, A.now))
end
return out
