--[[
extend: add between minMicros and wantMicros (as much as fits) to a live reservation, in the periods
and session it was booked in. Re-checks the key (revoked, provider) and every limit as they are now.

KEYS[1]     key record hash       lp:{h}:key
KEYS[2]     current periods       lp:{h}:cur, the string layout's five current periods (reserve.lua)
KEYS[3]     booked session hash, or a placeholder, never touched, when ARGV[3] = '0'
KEYS[4]     reservation record    lp:{h}:r:<requestId> (a string; a hash of an earlier release is read too)
Not passed: the booked period hashes lp:{h}:w:<window>:<period id> (spent, held), named here from KEYS[1] and ARGV[5]
            (in the key's {tag}, so in its slot)

ARGV[1]     minMicros
ARGV[2]     wantMicros (>= minMicros)
ARGV[3]     '1' when the reservation was booked in a session, else '0'
ARGV[4]     TTL seconds for a period key found without one (recreated after it expired)
ARGV[5]     the five booked period ids, minute to monthly, space separated (those of the record's created_at)

Returns one of
  {'ok', grantedMicros}
  {'not_held'}                                   no live reservation: never made, settled or abandoned
  {'invalid_key'} | {'key_revoked'} | {'provider_not_allowed'}
  {'budget_exceeded', windowIndex 1..5, limitMicros, spentPlusHeldMicros, heldMicros}
  {'session_budget_exceeded', budgetMicros, spentPlusHeldMicros, heldMicros}
]]

-- Integers are formatted explicitly (format('%d', n)), as in reserve.lua. tonumber reads a field HMGET found missing
-- (false) as nil and is kept for the limits an operator writes; a text this script, reserve or the caller wrote as an
-- integer is read by arithmetic (x + 0), which converts it once where tonumber converts it twice (Lua 5.1).
local function int(n) return string.format('%d', n) end
local function lowest(a, b)
  if a == nil then return b end
  if b == nil or a <= b then return a end
  return b
end

-- 1. Only a held reservation grows. Its record is a string, 'held <amount> <provider> …' ('kept …': held in the
--    string layout) (reserve.lua); a hash of an earlier release (fields state, amount, provider) fails GET, and only
--    then is read as one.
local state, amount, provider, rest
local got = redis.pcall('GET', KEYS[4])
if type(got) == 'string' then
  state, amount, rest = string.match(got, '^(%l+) (%d+) (.*)$')
  provider = rest and string.match(rest, '^%S+')
elseif got then
  local res = redis.call('HMGET', KEYS[4], 'state', 'provider')
  state, provider = res[1], res[2]
end
if state ~= 'held' and state ~= 'kept' then return {'not_held'} end

-- 2. The key must still exist, be active and allow the reservation's provider.
local rec = redis.call('HMGET', KEYS[1], 'active', 'providers',
  'lim:minute', 'lim:hourly', 'lim:daily', 'lim:weekly', 'lim:monthly', 'session_budget')
if not rec[1] then return {'invalid_key'} end
if rec[1] ~= '1' then return {'key_revoked'} end
if not string.find(',' .. (rec[2] or '') .. ',', ',' .. (provider or '') .. ',', 1, true) then
  return {'provider_not_allowed'}
end

local minMicros = ARGV[1] + 0
local grant = ARGV[2] + 0

-- 3. Where each booked period lives: in the string KEYS[2] while it is current there, else in its own hash (as settle:
--    'kept' knows it from the string; a hold booked in a hash meets the tombstone there once the key switched).
--    Every limited window, with the limits as they are now, must hold minMicros. Nearly always a 'kept' hold's periods
--    are all current (the string's ids are ARGV[5] itself): no hash is named.
local cur = redis.call('GET', KEYS[2])
local curs, curIds, curRequests
if cur then
  local s1, h1, s2, h2, s3, h3, s4, h4, s5, h5
  s1, h1, s2, h2, s3, h3, s4, h4, s5, h5, curRequests, curIds =
    string.match(cur, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (.*)$')
  if curIds then curs = {s1 + 0, h1 + 0, s2 + 0, h2 + 0, s3 + 0, h3 + 0, s4 + 0, h4 + 0, s5 + 0, h5 + 0} end
end
local allHere = state == 'kept' and curIds == ARGV[5]
local current, booked, names, prefix
if not allHere then
  current = curIds and {string.match(curIds, '^(%S+) (%S+) (%S+) (%S+) (%S+)$')}
  booked = {string.match(ARGV[5], '^(%S+) (%S+) (%S+) (%S+) (%S+)$')}
  names = {'minute', 'hourly', 'daily', 'weekly', 'monthly'}
  prefix = string.sub(KEYS[1], 1, #KEYS[1] - 3)
end
-- inCur[i]: in the string; keys[i]: the hash's name otherwise.
local inCur, keys = {}, {}
for i = 1, 5 do
  local here = allHere or (current ~= nil and current[i] == booked[i])
  local spent, held
  if here and state == 'kept' then
    spent, held = curs[2 * i - 1], curs[2 * i]
  else
    keys[i] = prefix .. 'w:' .. names[i] .. ':' .. booked[i]
    local p = redis.pcall('HMGET', keys[i], 'spent', 'held')
    if p.err then
      if not string.find(p.err, 'WRONGTYPE', 1, true) then return p end
      -- The tombstone: the period is current in the string (nothing else names it).
      if not here then return redis.error_reply('period ' .. keys[i] .. ' is a tombstone without its string') end
      spent, held, keys[i] = curs[2 * i - 1], curs[2 * i], nil
    else
      here = false
      spent, held = (p[1] or 0) + 0, (p[2] or 0) + 0
    end
  end
  inCur[i] = here
  local limit = tonumber(rec[2 + i])
  if limit then
    local used = spent + held
    if limit - used < minMicros then return {'budget_exceeded', i, limit, used, held} end
    if limit - used < grant then grant = limit - used end
  end
end

-- 4. The session budget (lowered by a new key default too). An expired session is not recreated.
local hasSession = ARGV[3] == '1' and redis.call('EXISTS', KEYS[3]) == 1
if hasSession then
  local s = redis.call('HMGET', KEYS[3], 'budget', 'spent', 'held')
  local budget = lowest(s[1] and s[1] + 0 or nil, tonumber(rec[8]))
  if budget then
    local held = (s[3] or 0) + 0
    local used = (s[2] or 0) + held
    if budget - used < minMicros then return {'session_budget_exceeded', budget, used, held} end
    if budget - used < grant then grant = budget - used end
  end
end

-- 5. Hold the extra amount everywhere the reservation lives. A period key that held nothing before may
--    have expired and been recreated here, so it gets a TTL if it has none; one that held some was
--    created by reserve, which set its TTL.
local grantArg = int(grant)
local curChanged = false
for i = 1, 5 do
  if inCur[i] then
    curs[2 * i], curChanged = curs[2 * i] + grant, true
  elseif redis.call('HINCRBY', keys[i], 'held', grantArg) == grant and redis.call('TTL', keys[i]) < 0 then
    redis.call('EXPIRE', keys[i], ARGV[4])
  end
end
if curChanged then
  redis.call('SET', KEYS[2], string.format('%d %d %d %d %d %d %d %d %d %d %s %s', curs[1], curs[2], curs[3], curs[4],
    curs[5], curs[6], curs[7], curs[8], curs[9], curs[10], curRequests, curIds), 'KEEPTTL')
end
if hasSession then redis.call('HINCRBY', KEYS[3], 'held', grantArg) end
if rest then
  redis.call('SET', KEYS[4], state .. ' ' .. int(amount + grant) .. ' ' .. rest, 'KEEPTTL')
else
  redis.call('HINCRBY', KEYS[4], 'amount', grantArg)
end
return {'ok', grant}
