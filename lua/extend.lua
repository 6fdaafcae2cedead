--[[
extend: add between minMicros and wantMicros (as much as fits) to a live reservation, in the periods
and session it was booked in. Re-checks the key (revoked, provider) and every limit as they are now.

KEYS[1]     key record hash       lp:{h}:key
KEYS[2..6]  booked period hashes  minute, hourly, daily, weekly, monthly (fields spent, held)
KEYS[7]     booked session hash, or a placeholder, never touched, when ARGV[3] = '0'
KEYS[8]     reservation record    lp:{h}:r:<requestId> (a string; a hash of an earlier release is read too)

ARGV[1]     minMicros
ARGV[2]     wantMicros (>= minMicros)
ARGV[3]     '1' when the reservation was booked in a session, else '0'
ARGV[4]     TTL seconds for a period key found without one (recreated after it expired)

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

-- 1. Only a held reservation grows. Its record is a string, 'held <amount> <provider> …' (reserve.lua); a hash of
--    an earlier release (fields state, amount, provider) fails GET, and only then is read as one.
local state, amount, provider, rest
local got = redis.pcall('GET', KEYS[8])
if type(got) == 'string' then
  state, amount, rest = string.match(got, '^(%l+) (%d+) (.*)$')
  provider = rest and string.match(rest, '^%S+')
elseif got then
  local res = redis.call('HMGET', KEYS[8], 'state', 'provider')
  state, provider = res[1], res[2]
end
if state ~= 'held' then return {'not_held'} end

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

-- 3. Every limited window, with the limits as they are now, must hold minMicros.
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

-- 4. The session budget (lowered by a new key default too). An expired session is not recreated.
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

-- 5. Hold the extra amount everywhere the reservation lives. A period key that held nothing before may
--    have expired and been recreated here, so it gets a TTL if it has none; one that held some was
--    created by reserve, which set its TTL.
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
