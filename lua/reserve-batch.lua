--[[
reserve-batch: admit several requests of one key in one call, each exactly as reserve.lua would admit it on its own,
in order, when the key is on the string layout and its current periods are the ones named (ARGV[1]): the request
has no session, and no loop check in force (none asked, or the key's guard off: loop_limit '0'). Any other item (a
refusal of any kind, a used request id, a key not on the string layout, periods turned since, a loop guard in force)
is left untouched, holding nothing, for reserve.lua, which answers it as it answers any request.

KEYS[1]     key record            lp:{h}:key (reserve.lua)
KEYS[2]     current periods       lp:{h}:cur (reserve.lua's string layout)
KEYS[3..]   the reservation records lp:{h}:r:<requestId>, one an item
ARGV[1]     the five current period ids, minute to monthly, space separated (reserve.lua's ARGV[5])
ARGV[2]     current time, ISO 8601, of those periods (each admitted record's created_at)
ARGV[3]     one character an item: '1' when it asks a loop check, else '0'
ARGV[4..]   each item's provider id, minMicros, maxMicros, in KEYS' order

Returns a list, one value an item: what reserve.lua would have answered admitting it (remainingMicros, an integer,
-1 when nothing is limited; or '<grantedMicros> <remainingMicros> ' when a limit shrank the grant), or nil (untouched:
reserve it with reserve.lua).
]]

local format = string.format
-- RESERVATION_TTL_SECONDS, as reserve.lua (test/unit/lua-ttl-constants.test.ts holds them equal).
local recordTtl = '3024000'
local items = #KEYS - 2
local out = {}

-- 1. The key, read once: active, on the string layout, limited or marked unlimited; else every item is reserve.lua's.
local rec = redis.call('HMGET', KEYS[1], 'active', 'providers', 'lim:minute', 'lim:hourly', 'lim:daily', 'lim:weekly',
  'lim:monthly', 'unlimited', 'rpm', 'layout', 'loop_limit')
local v
if rec[1] == '1' and rec[10] == '1' and (rec[8] == '1' or rec[3] or rec[4] or rec[5] or rec[6] or rec[7]) then
  v = redis.call('GET', KEYS[2])
end
local s1, h1, s2, h2, s3, h3, s4, h4, s5, h5, requests, ids
if v then
  s1, h1, s2, h2, s3, h3, s4, h4, s5, h5, requests, ids =
    string.match(v, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (.*)$')
end
if ids ~= ARGV[1] then
  for i = 1, items do out[i] = false end
  return out
end
local spent = {s1 + 0, s2 + 0, s3 + 0, s4 + 0, s5 + 0}
local held = {h1 + 0, h2 + 0, h3 + 0, h4 + 0, h5 + 0}
requests = requests + 0
local limits = {rec[3] and tonumber(rec[3]), rec[4] and tonumber(rec[4]), rec[5] and tonumber(rec[5]),
  rec[6] and tonumber(rec[6]), rec[7] and tonumber(rec[7])}
local rpm = rec[9] and tonumber(rec[9])
local guardOff = rec[11] == '0'
local providers = ',' .. (rec[2] or '') .. ','

-- 2. Each item in order, against what the items before it hold: admitted as reserve.lua steps 1 to 6 admit (its record
--    'kept <grant> <provider> <created_at>', SET NX with its TTL; the grant held in all five periods, the request counted
--    in the minute), or left untouched.
local admitted = false
for i = 1, items do
  local at = 3 * i + 1
  local provider = ARGV[at]
  local ok = (rec[2] == provider or string.find(providers, ',' .. provider .. ',', 1, true)) and
    (guardOff or string.byte(ARGV[3], i) ~= 49) and not (rpm and requests >= rpm)
  local minMicros, maxMicros = ARGV[at + 1] + 0, ARGV[at + 2] + 0
  local grant, room = maxMicros, nil
  if ok then
    for w = 1, 5 do
      local limit = limits[w]
      if limit then
        local left = limit - spent[w] - held[w]
        if left < minMicros then ok = false end
        if left < grant then grant = left end
        if not room or left < room then room = left end
      end
    end
  end
  local grantArg = ARGV[at + 2]
  if grant ~= maxMicros then grantArg = format('%d', grant) end
  if ok and redis.call('SET', KEYS[i + 2], 'kept ' .. grantArg .. ' ' .. provider .. ' ' .. ARGV[2], 'EX', recordTtl, 'NX') then
    for w = 1, 5 do held[w] = held[w] + grant end
    requests, admitted = requests + 1, true
    if grant == maxMicros then
      out[i] = room and room - grant or -1
    else
      out[i] = grantArg .. ' ' .. format('%d', room - grant) .. ' '
    end
  else
    out[i] = false
  end
end

-- 3. The string, written once (its TTL kept: no period turned).
if admitted then
  redis.call('SET', KEYS[2], format('%d %d %d %d %d %d %d %d %d %d %d ', spent[1], held[1], spent[2], held[2], spent[3],
    held[3], spent[4], held[4], spent[5], held[5], requests) .. ids, 'KEEPTTL')
end
return out
