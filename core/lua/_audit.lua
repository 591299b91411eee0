-- The audit log, appended to by the script that makes the change it records.

-- Appends to the audit log, in the same script as the change it records. `entry` is the JSON
-- of core/audit.py's Audit.fields(); the script fills in when, the project and the batch.
local function audit(entry, project_id, batch_id, now)
  local e = cjson.decode(entry)
  e['at'], e['project_id'], e['batch_id'] = now, project_id, batch_id
  local args = {'XADD', K.audit(), 'MAXLEN', '~', AUDIT_RETAINED, '*'}
  for _, name in ipairs(AUDIT_FIELDS) do
    table.insert(args, name)
    table.insert(args, e[name])
  end
  redis.call(unpack(args))
end
