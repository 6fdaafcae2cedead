--[[
PROBE ONLY (bench/redis-time.mjs --probe): settle.lua's common path on the layout of reserve-string.lua here.
KEYS and ARGV as settle.lua here.
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
local v = redis.call('GET', KEYS[1])
local s1, h1, s2, h2, s3, h3, s4, h4, s5, h5, rest, ids
if v then
  s1, h1, s2, h2, s3, h3, s4, h4, s5, h5, rest, ids =
    string.match(v, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+ )(.*)$')
end
if ids == ARGV[2] then
  h1, h2, h3, h4, h5 = h1 - reserved, h2 - reserved, h3 - reserved, h4 - reserved, h5 - reserved
  if h1 < 0 then h1 = 0 end
  if h2 < 0 then h2 = 0 end
  if h3 < 0 then h3 = 0 end
  if h4 < 0 then h4 = 0 end
  if h5 < 0 then h5 = 0 end
  redis.call('SET', KEYS[1], format('%d %d %d %d %d %d %d %d %d %d %s%s', s1 + actual, h1, s2 + actual, h2, s3 + actual, h3,
    s4 + actual, h4, s5 + actual, h5, rest, ids), 'KEEPTTL')
else
  -- (Probe: a hold booked in a period since moved aside is settled in the moved period; not measured here.)
  return redis.error_reply('probe: turned period')
end
if actual > 0 and redis.call('INCRBY', KEYS[2], ARGV[1]) == actual then
  redis.call('EXPIREAT', KEYS[2], '1900000000')
end
return actual
