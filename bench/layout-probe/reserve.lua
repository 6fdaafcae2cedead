--[[
PROBE ONLY (bench/redis-time.mjs --probe; never loaded by the proxy): reserve.lua's common path (no session; a loop check
with the guard off, or none) on a layout where the current period of all five windows lives in one hash per key,
read by one HMGET and written by one HSET, to measure what such a layout would buy. Not safe to ship as it is: a
previous release's process reads and writes the period hashes lp:{h}:w:<window>:<id> themselves (see the report).

KEYS[1] key record; KEYS[2] current periods hash lp:{h}:cur (ids = '<minute> <hourly> <daily> <weekly> <monthly>'
        ids; <w>s, <w>h = spent, held of window w (1..5) in its current period; r = the minute's requests);
KEYS[3] reservation record; KEYS[4], KEYS[5] loop keys (a loop check: unused with the guard off)
ARGV    provider, minMicros, maxMicros, TTLs of the five periods (space separated), now ISO, the five current ids
        (space separated), then a loop check's step and nowMs
A window's turn moves its old period aside into lp:{h}:w:<window>:<id> (the current layout's key), undeclared but
in the key's slot; settle finds a hold booked there by its ids.
]]
local format = string.format
local rec = redis.call('HMGET', KEYS[1], 'active', 'providers', 'lim:minute', 'lim:hourly', 'lim:daily', 'lim:weekly',
  'lim:monthly', 'unlimited', 'rpm', 'loop_limit', 'loop_window')
if not rec[1] then return {'invalid_key'} end
if rec[1] ~= '1' then return {'key_revoked'} end
if rec[2] ~= ARGV[1] and not string.find(',' .. (rec[2] or '') .. ',', ',' .. ARGV[1] .. ',', 1, true) then
  return {'provider_not_allowed'}
end
if rec[8] ~= '1' and not (rec[3] or rec[4] or rec[5] or rec[6] or rec[7]) then return {'budget_not_set'} end
local minMicros, maxMicros = ARGV[2] + 0, ARGV[3] + 0
local grant = maxMicros
local c = redis.call('HMGET', KEYS[2], 'ids', '1s', '1h', '2s', '2h', '3s', '3h', '4s', '4h', '5s', '5h', 'r')
local requests = c[12]
if c[1] ~= ARGV[6] then
  -- A window turned (once a minute at most): each turned window's old period goes aside, the new one starts at 0.
  local names = {'minute', 'hourly', 'daily', 'weekly', 'monthly'}
  local old = c[1] and {string.match(c[1], '^(%S+) (%S+) (%S+) (%S+) (%S+)$')} or {}
  local new = {string.match(ARGV[6], '^(%S+) (%S+) (%S+) (%S+) (%S+)$')}
  local ttls = {string.match(ARGV[4], '^(%d+) (%d+) (%d+) (%d+) (%d+)$')}
  local prefix = string.sub(KEYS[1], 1, #KEYS[1] - 3)
  for i = 1, 5 do
    if old[i] ~= new[i] then
      if old[i] and (c[2 * i] or c[2 * i + 1]) then
        local aside = prefix .. 'w:' .. names[i] .. ':' .. old[i]
        redis.call('HSET', aside, 'spent', c[2 * i] or '0', 'held', c[2 * i + 1] or '0')
        redis.call('EXPIRE', aside, '86400')
      end
      c[2 * i], c[2 * i + 1] = false, false
      if i == 1 then requests = false end
    end
  end
  redis.call('HSET', KEYS[2], 'ids', ARGV[6])
  redis.call('EXPIRE', KEYS[2], ttls[5])
end
local rpm = tonumber(rec[9])
local refusal
if rpm and (requests or 0) + 0 >= rpm then refusal = {'rate_limited', rpm, requests + 0} end
local room
for i = 1, 5 do
  local limit = not refusal and tonumber(rec[2 + i])
  if limit then
    local held = (c[2 * i + 1] or 0) + 0
    local used = (c[2 * i] or 0) + held
    local left = limit - used
    if left < minMicros then refusal = {'budget_exceeded', i, limit, used, held} end
    if left < grant then grant = left end
    if not room or left < room then room = left end
  end
end
if refusal then
  if redis.call('EXISTS', KEYS[3]) == 1 then return {'duplicate'} end
  return refusal
end
local grantArg = ARGV[3]
if grant ~= maxMicros then grantArg = format('%d', grant) end
if not redis.call('SET', KEYS[3], 'held ' .. grantArg .. ' ' .. ARGV[1] .. ' ' .. ARGV[5], 'EX', '3024000', 'NX') then
  return {'duplicate'}
end
redis.call('HSET', KEYS[2], '1h', format('%d', (c[3] or 0) + grant), '2h', format('%d', (c[5] or 0) + grant),
  '3h', format('%d', (c[7] or 0) + grant), '4h', format('%d', (c[9] or 0) + grant),
  '5h', format('%d', (c[11] or 0) + grant), 'r', format('%d', (requests or 0) + 1))
if grant == maxMicros then
  if room then return room - grant end
  return -1
end
if room then return grantArg .. ' ' .. format('%d', room - grant) .. ' ' end
return grantArg .. '  '
