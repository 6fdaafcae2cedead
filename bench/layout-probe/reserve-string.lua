--[[
PROBE ONLY (bench/redis-time.mjs --probe; never loaded by the proxy): as reserve.lua here, the five current periods kept
in one string per key, lp:{h}:cur = '<1s> <1h> <2s> <2h> <3s> <3h> <4s> <4h> <5s> <5h> <requests> <ids>' (spent and
held of each window, minute to monthly; the minute's requests; the five current period ids, space separated):
one GET and one SET, no hash fields (a listpack finds each field by a linear scan).
KEYS and ARGV as reserve.lua here.
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
local v = redis.call('GET', KEYS[2])
local s1, h1, s2, h2, s3, h3, s4, h4, s5, h5, requests, ids
if v then
  s1, h1, s2, h2, s3, h3, s4, h4, s5, h5, requests, ids =
    string.match(v, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (.*)$')
end
local c
if ids == ARGV[6] then
  c = {s1 + 0, h1 + 0, s2 + 0, h2 + 0, s3 + 0, h3 + 0, s4 + 0, h4 + 0, s5 + 0, h5 + 0}
  requests = requests + 0
else
  -- A window turned (once a minute at most): each turned window's old period goes aside, the new one starts at 0.
  c = {(s1 or 0) + 0, (h1 or 0) + 0, (s2 or 0) + 0, (h2 or 0) + 0, (s3 or 0) + 0, (h3 or 0) + 0, (s4 or 0) + 0,
    (h4 or 0) + 0, (s5 or 0) + 0, (h5 or 0) + 0}
  requests = (requests or 0) + 0
  local names = {'minute', 'hourly', 'daily', 'weekly', 'monthly'}
  local old = ids and {string.match(ids, '^(%S+) (%S+) (%S+) (%S+) (%S+)$')} or {}
  local new = {string.match(ARGV[6], '^(%S+) (%S+) (%S+) (%S+) (%S+)$')}
  local prefix = string.sub(KEYS[1], 1, #KEYS[1] - 3)
  for i = 1, 5 do
    if old[i] ~= new[i] then
      if old[i] then
        local aside = prefix .. 'w:' .. names[i] .. ':' .. old[i]
        redis.call('HSET', aside, 'spent', format('%d', c[2 * i - 1]), 'held', format('%d', c[2 * i]))
        redis.call('EXPIRE', aside, '86400')
      end
      c[2 * i - 1], c[2 * i] = 0, 0
      if i == 1 then requests = 0 end
    end
  end
end
local rpm = tonumber(rec[9])
local refusal
if rpm and requests >= rpm then refusal = {'rate_limited', rpm, requests} end
local room
for i = 1, 5 do
  local limit = not refusal and tonumber(rec[2 + i])
  if limit then
    local held = c[2 * i]
    local used = c[2 * i - 1] + held
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
local ttl = (v == false or ids ~= ARGV[6]) and string.match(ARGV[4], '(%d+)$')
local value = format('%d %d %d %d %d %d %d %d %d %d %d %s', c[1], c[2] + grant, c[3], c[4] + grant, c[5], c[6] + grant,
  c[7], c[8] + grant, c[9], c[10] + grant, requests + 1, ARGV[6])
if ttl then redis.call('SET', KEYS[2], value, 'EX', ttl) else redis.call('SET', KEYS[2], value, 'KEEPTTL') end
if grant == maxMicros then
  if room then return room - grant end
  return -1
end
if room then return grantArg .. ' ' .. format('%d', room - grant) .. ' ' end
return grantArg .. '  '
