--[[
extend: add between minMicros and wantMicros (as much as fits) to a live reservation, in the periods
and session it was booked in. Re-checks the key (revoked, provider) and every limit as they are now.

KEYS[1]     key record hash       lp:{h}:key
KEYS[2]     current periods       lp:{h}:cur, the string layout's five current periods (reserve.lua)
            or, while the store is not marked for the string layout (lp:layout, read by the caller once a minute),
KEYS[2..6]  the booked period hashes lp:{h}:w:<window>:<period id>, minute to monthly, and every key below four
            places on (told by #KEYS: 4 or 8). Either way both layouts are handled: the keys not passed are named here.
KEYS[3]     booked session hash, or a placeholder, never touched, when ARGV[3] = '0'
KEYS[4]     reservation record    lp:{h}:r:<requestId> (a string; a hash of an earlier release is read too)
Not passed: the booked period hashes lp:{h}:w:<window>:<period id> (spent, held), named here from KEYS[1] and ARGV[5],
            or the string, named from KEYS[1] (in the key's {tag}, so in its slot)

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
-- The period hashes passed (KEYS[2..6]): the session and the record are KEYS[7] and KEYS[8], and the string is read
-- only for a hold booked in it or once a hash holds its tombstone.
-- (ARGV[5] is not passed with the period hashes: the ids are read from their names where the string is read.)
local curName, sessionName, recordName, bookedIds = KEYS[2], KEYS[3], KEYS[4], ARGV[5]
local periodsPassed = #KEYS == 8
if periodsPassed then curName, sessionName, recordName, bookedIds = nil, KEYS[7], KEYS[8], nil end
local state, amount, provider, rest
local got = redis.pcall('GET', recordName)
if type(got) == 'string' then
  state, amount, rest = string.match(got, '^(%l+) (%d+) (.*)$')
  provider = rest and string.match(rest, '^%S+')
elseif got then
  local res = redis.call('HMGET', recordName, 'state', 'provider')
  state, provider = res[1], res[2]
end
if state ~= 'held' and state ~= 'kept' then return {'not_held'} end

-- 2. The key must still exist, be active and allow the reservation's provider.
--    With the period hashes passed, also whether the key is on the string layout (step 3).
local rec
if periodsPassed then
  rec = redis.call('HMGET', KEYS[1], 'active', 'providers',
    'lim:minute', 'lim:hourly', 'lim:daily', 'lim:weekly', 'lim:monthly', 'session_budget', 'layout')
else
  rec = redis.call('HMGET', KEYS[1], 'active', 'providers',
    'lim:minute', 'lim:hourly', 'lim:daily', 'lim:weekly', 'lim:monthly', 'session_budget')
end
if not rec[1] then return {'invalid_key'} end
if rec[1] ~= '1' then return {'key_revoked'} end
if not string.find(',' .. (rec[2] or '') .. ',', ',' .. (provider or '') .. ',', 1, true) then
  return {'provider_not_allowed'}
end

local minMicros = ARGV[1] + 0
local grant = ARGV[2] + 0

-- 3. Where each booked period lives: in the string curName while it is current there, else in its own hash (as settle:
--    'kept' knows it from the string; a hold booked in a hash meets the tombstone there once the key switched).
--    Every limited window, with the limits as they are now, must hold minMicros. Nearly always a 'kept' hold's periods
--    are all current (the string's ids are ARGV[5] itself): no hash is named.
--    A hold booked in the hashes passed, of a key still on the hash layout (its record without layout = '1'), meets no
--    tombstone (only a reserve on the string layout writes one): steps 3 to 5 as before the string layout, only its
--    limited windows read (the general path below costs 15% more instructions).
if periodsPassed and state == 'held' and rec[9] ~= '1' then
  for i = 1, 5 do
    local limit = tonumber(rec[2 + i])
    if limit then
      local p = redis.call('HMGET', KEYS[1 + i], 'spent', 'held')
      local held = (p[2] or 0) + 0
      local used = (p[1] or 0) + held
      if limit - used < minMicros then return {'budget_exceeded', i, limit, used, held} end
      if limit - used < grant then grant = limit - used end
    end
  end
  local hasSession = ARGV[3] == '1' and redis.call('EXISTS', KEYS[7]) == 1
  if hasSession then
    local s = redis.call('HMGET', KEYS[7], 'budget', 'spent', 'held')
    local budget = lowest(s[1] and s[1] + 0 or nil, tonumber(rec[8]))
    if budget then
      local held = (s[3] or 0) + 0
      local used = (s[2] or 0) + held
      if budget - used < minMicros then return {'session_budget_exceeded', budget, used, held} end
      if budget - used < grant then grant = budget - used end
    end
  end
  local grantArg = int(grant)
  for i = 1, 5 do
    if redis.call('HINCRBY', KEYS[1 + i], 'held', grantArg) == grant and redis.call('TTL', KEYS[1 + i]) < 0 then
      redis.call('EXPIRE', KEYS[1 + i], ARGV[4])
    end
  end
  if hasSession then redis.call('HINCRBY', KEYS[7], 'held', grantArg) end
  if rest then
    redis.call('SET', KEYS[8], 'held ' .. int(amount + grant) .. ' ' .. rest, 'KEEPTTL')
  else
    redis.call('HINCRBY', KEYS[8], 'amount', grantArg)
  end
  return {'ok', grant}
end
-- The string's counts and ids (curIds nil: no string, or not read yet); booked: ARGV[5]'s ids, read where compared with
-- the string's or a hash is named.
local curs, curIds, curRequests
local curRead = not periodsPassed or state == 'kept'
if curRead then
  if not curName then
    local idAt = '^[^}]*}:w:%a+:(.*)$'
    curName = string.sub(KEYS[1], 1, #KEYS[1] - 3) .. 'cur'
    bookedIds = string.match(KEYS[2], idAt) .. ' ' .. string.match(KEYS[3], idAt) .. ' ' .. string.match(KEYS[4], idAt) ..
      ' ' .. string.match(KEYS[5], idAt) .. ' ' .. string.match(KEYS[6], idAt)
  end
  local cur = redis.call('GET', curName)
  if cur then
    local s1, h1, s2, h2, s3, h3, s4, h4, s5, h5
    s1, h1, s2, h2, s3, h3, s4, h4, s5, h5, curRequests, curIds =
      string.match(cur, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (.*)$')
    if curIds then curs = {s1 + 0, h1 + 0, s2 + 0, h2 + 0, s3 + 0, h3 + 0, s4 + 0, h4 + 0, s5 + 0, h5 + 0} end
  end
end
local allHere = state == 'kept' and curIds == bookedIds
local current, booked, names, prefix
if not allHere then
  current = curIds and {string.match(curIds, '^(%S+) (%S+) (%S+) (%S+) (%S+)$')}
  if curIds or not periodsPassed then booked = {string.match(bookedIds, '^(%S+) (%S+) (%S+) (%S+) (%S+)$')} end
  if not periodsPassed then
    names = {'minute', 'hourly', 'daily', 'weekly', 'monthly'}
    prefix = string.sub(KEYS[1], 1, #KEYS[1] - 3)
  end
end
-- inCur[i]: in the string; keys[i]: the hash's name otherwise.
local inCur, keys = {}, {}
for i = 1, 5 do
  local here = allHere or (current ~= nil and current[i] == booked[i])
  local spent, held
  if here and state == 'kept' then
    spent, held = curs[2 * i - 1], curs[2 * i]
  else
    if periodsPassed then keys[i] = KEYS[1 + i] else keys[i] = prefix .. 'w:' .. names[i] .. ':' .. booked[i] end
    local p = redis.pcall('HMGET', keys[i], 'spent', 'held')
    if p.err then
      if not string.find(p.err, 'WRONGTYPE', 1, true) then return p end
      -- The tombstone: the period is current in the string (nothing else names it), read only now when not before.
      if not curRead then
        local idAt = '^[^}]*}:w:%a+:(.*)$'
        curRead, curName = true, string.sub(KEYS[1], 1, #KEYS[1] - 3) .. 'cur'
        bookedIds = string.match(KEYS[2], idAt) .. ' ' .. string.match(KEYS[3], idAt) .. ' ' .. string.match(KEYS[4], idAt) ..
          ' ' .. string.match(KEYS[5], idAt) .. ' ' .. string.match(KEYS[6], idAt)
        local cur = redis.call('GET', curName)
        if cur then
          local s1, h1, s2, h2, s3, h3, s4, h4, s5, h5
          s1, h1, s2, h2, s3, h3, s4, h4, s5, h5, curRequests, curIds =
            string.match(cur, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (.*)$')
          if curIds then curs = {s1 + 0, h1 + 0, s2 + 0, h2 + 0, s3 + 0, h3 + 0, s4 + 0, h4 + 0, s5 + 0, h5 + 0} end
        end
        if curIds then
          current = {string.match(curIds, '^(%S+) (%S+) (%S+) (%S+) (%S+)$')}
          booked = booked or {string.match(bookedIds, '^(%S+) (%S+) (%S+) (%S+) (%S+)$')}
          here = current[i] == booked[i]
        end
      end
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
local hasSession = ARGV[3] == '1' and redis.call('EXISTS', sessionName) == 1
if hasSession then
  local s = redis.call('HMGET', sessionName, 'budget', 'spent', 'held')
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
  redis.call('SET', curName, string.format('%d %d %d %d %d %d %d %d %d %d %s %s', curs[1], curs[2], curs[3], curs[4],
    curs[5], curs[6], curs[7], curs[8], curs[9], curs[10], curRequests, curIds), 'KEEPTTL')
end
if hasSession then redis.call('HINCRBY', sessionName, 'held', grantArg) end
if rest then
  redis.call('SET', recordName, state .. ' ' .. int(amount + grant) .. ' ' .. rest, 'KEEPTTL')
else
  redis.call('HINCRBY', recordName, 'amount', grantArg)
end
return {'ok', grant}
