-- The effective status of each given device type (see device_status in _lib.lua).
-- KEYS none: a device type's status and calibration keys come from K.* (two per type).
-- ARGV[2] now (µs)
-- ARGV[3..] device types
-- Returns one status per device type, in order (data, no reply code).
local out = {}
for i = 3, #ARGV do
  table.insert(out, device_status(ARGV[i], ARGV[2]))
end
return out
