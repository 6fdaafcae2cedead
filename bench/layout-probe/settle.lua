--[[
PROBE ONLY (bench/redis-time.mjs --probe): settle.lua's common path on the layout of bench/layout-probe/reserve.lua.
KEYS[1] current periods hash lp:{h}:cur; KEYS[2] today's spend history; KEYS[3] reservation record
ARGV    actualMicros, the five booked period ids (space separated, as the record's created_at names them)
A hold booked in a period since moved aside is settled there (undeclared key in the key's slot).
]]
local format = string.format
local settled = 'settled ' .. ARGV[1]
local got = redis.pcall('SET', KEYS[3], settled, 'EX', '86400', 'GET')
local state, amount
if type(got) == 'string' then
  state, amount = string.match(got, '^(%l+) (%d+)')
  if state == 'settled' then
    redis.call('SET', KEYS[3], got, 'KEEPTTL')
    return {'already', tonumber(amount) or 0}
  end
end
local reserved = 0
if state == 'held' then reserved = amount + 0 end
local actual = ARGV[1] + 0
local c = redis.call('HMGET', KEYS[1], 'ids', '1s', '1h', '2s', '2h', '3s', '3h', '4s', '4h', '5s', '5h')
local function put(s, h)
  h = h - reserved
  if h < 0 then h = 0 end
  return format('%d', s + actual), format('%d', h)
end
if c[1] == ARGV[2] then
  local s1, h1 = put((c[2] or 0) + 0, (c[3] or 0) + 0)
  local s2, h2 = put((c[4] or 0) + 0, (c[5] or 0) + 0)
  local s3, h3 = put((c[6] or 0) + 0, (c[7] or 0) + 0)
  local s4, h4 = put((c[8] or 0) + 0, (c[9] or 0) + 0)
  local s5, h5 = put((c[10] or 0) + 0, (c[11] or 0) + 0)
  redis.call('HSET', KEYS[1], '1s', s1, '1h', h1, '2s', s2, '2h', h2, '3s', s3, '3h', h3, '4s', s4, '4h', h4, '5s', s5, '5h', h5)
else
  -- Some booked periods were moved aside (a window turned since the reserve): each is settled where it lives.
  local names = {'minute', 'hourly', 'daily', 'weekly', 'monthly'}
  local cur = c[1] and {string.match(c[1], '^(%S+) (%S+) (%S+) (%S+) (%S+)$')} or {}
  local booked = {string.match(ARGV[2], '^(%S+) (%S+) (%S+) (%S+) (%S+)$')}
  local prefix = string.sub(KEYS[1], 1, #KEYS[1] - 3)
  for i = 1, 5 do
    if cur[i] == booked[i] then
      local s, h = put((c[2 * i] or 0) + 0, (c[2 * i + 1] or 0) + 0)
      redis.call('HSET', KEYS[1], i .. 's', s, i .. 'h', h)
    else
      local aside = prefix .. 'w:' .. names[i] .. ':' .. booked[i]
      local p = redis.call('HMGET', aside, 'spent', 'held')
      local s, h = put((p[1] or 0) + 0, (p[2] or 0) + 0)
      redis.call('HSET', aside, 'spent', s, 'held', h)
    end
  end
end
if actual > 0 and redis.call('INCRBY', KEYS[2], ARGV[1]) == actual then
  redis.call('EXPIREAT', KEYS[2], '1900000000')
end
return actual
