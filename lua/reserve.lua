--[[
reserve: admit a request by holding between minMicros and maxMicros in all five window periods and
the session, atomically, or hold nothing and say why. Money is integer micro-USD.

KEYS[1]     key record hash       lp:{h}:key  (active, providers, lim:<window>, session_budget, session_max_steps,
                                  unlimited, rpm)
KEYS[2..6]  current period hashes lp:{h}:w:<window>:<period>, minute, hourly, daily, weekly, monthly (spent, held;
                                  the minute's also requests: admitted requests)
KEYS[7]     session hash          lp:{h}:s:<id> (budget, max_steps, steps, spent, held); a placeholder,
                                  never touched, when ARGV[9] = '0'
KEYS[8]     reservation record    lp:{h}:r:<requestId>

ARGV[1]     provider id
ARGV[2]     minMicros
ARGV[3]     maxMicros (>= minMicros)
ARGV[4..8]  TTL seconds of the five period keys, in KEYS order
ARGV[9]     '1' when the request has a session, else '0'
ARGV[10]    session budget the request asks for (micros), or ''
ARGV[11]    session max steps the request asks for, or ''
ARGV[12]    session TTL seconds
ARGV[13]    reservation record TTL seconds
ARGV[14]    current time, ISO 8601 (kept on the record for forensics)

Returns one of
  {'ok', grantedMicros}
  {'invalid_key'} | {'key_revoked'} | {'provider_not_allowed'}
  {'budget_not_set'}                             no window is limited and the key is not marked unlimited
  {'duplicate'}                                  the request id was used before (a fault, not a refusal)
  {'budget_exceeded', windowIndex 1..5, limitMicros, spentPlusHeldMicros, heldMicros}
  {'session_steps_exceeded', maxSteps, steps}
  {'session_budget_exceeded', budgetMicros, spentPlusHeldMicros, heldMicros}
  {'rate_limited', rpm, requestsThisMinute}
]]

-- Lua numbers are doubles; how Redis turns one into a command argument differs between versions
-- (tostring() would print 1e+15), so integers are formatted explicitly.
local function int(n) return string.format('%d', n) end
local function num(v) if v then return tonumber(v) end return nil end
-- The smaller of two optional limits; nil means "no limit".
local function lowest(a, b)
  if a == nil then return b end
  if b == nil or a <= b then return a end
  return b
end

-- 1. The key must exist, be active, allow this provider, and have a limit in some window or be
--    marked unlimited.
local rec = redis.call('HMGET', KEYS[1], 'active', 'providers',
  'lim:minute', 'lim:hourly', 'lim:daily', 'lim:weekly', 'lim:monthly', 'session_budget', 'session_max_steps',
  'unlimited', 'rpm')
if not rec[1] then return {'invalid_key'} end
if rec[1] ~= '1' then return {'key_revoked'} end
if not string.find(',' .. (rec[2] or '') .. ',', ',' .. ARGV[1] .. ',', 1, true) then
  return {'provider_not_allowed'}
end
if rec[10] ~= '1' and not (rec[3] or rec[4] or rec[5] or rec[6] or rec[7]) then return {'budget_not_set'} end

-- 2. A request id is used once: a held, settled or tombstoned record means a caller fault.
if redis.call('EXISTS', KEYS[8]) == 1 then return {'duplicate'} end

local minMicros = tonumber(ARGV[2])
local grant = tonumber(ARGV[3])
local hasSession = ARGV[9] == '1'

-- 3. The session's limits are the lowest of what it has, what this request asks and the key's
--    defaults, so they can be lowered and never raised. A lowering sticks even when this request is
--    refused (CONTRACT §4), and every request with a session keeps that session alive, admitted or not.
local s, sessionBudget, sessionMaxSteps
if hasSession then
  s = redis.call('HMGET', KEYS[7], 'budget', 'max_steps', 'steps', 'spent', 'held')
  sessionBudget = lowest(lowest(num(s[1]), num(ARGV[10])), num(rec[8]))
  sessionMaxSteps = lowest(lowest(num(s[2]), num(ARGV[11])), num(rec[9]))
  if sessionBudget and sessionBudget ~= num(s[1]) then redis.call('HSET', KEYS[7], 'budget', int(sessionBudget)) end
  if sessionMaxSteps and sessionMaxSteps ~= num(s[2]) then redis.call('HSET', KEYS[7], 'max_steps', int(sessionMaxSteps)) end
  if redis.call('EXISTS', KEYS[7]) == 1 then redis.call('EXPIRE', KEYS[7], ARGV[12]) end
end

-- 3b. The request rate: at most rpm admitted requests per UTC minute, counted in the minute period.
local rpm = num(rec[11])
if rpm then
  local count = num(redis.call('HGET', KEYS[2], 'requests')) or 0
  if count >= rpm then return {'rate_limited', rpm, count} end
end

-- 4. Every limited window must hold minMicros; the grant shrinks to the tightest one.
--    Reaching a limit exactly is allowed: limit - used may equal the grant.
for i = 1, 5 do
  local limit = num(rec[2 + i])
  if limit then
    local p = redis.call('HMGET', KEYS[1 + i], 'spent', 'held')
    local held = num(p[2]) or 0
    local used = (num(p[1]) or 0) + held
    if limit - used < minMicros then return {'budget_exceeded', i, limit, used, held} end
    if limit - used < grant then grant = limit - used end
  end
end

-- 5. The session: steps are checked first, then its budget.
if hasSession then
  local steps = num(s[3]) or 0
  if sessionMaxSteps and steps >= sessionMaxSteps then
    return {'session_steps_exceeded', sessionMaxSteps, steps}
  end
  if sessionBudget then
    local held = num(s[5]) or 0
    local used = (num(s[4]) or 0) + held
    if sessionBudget - used < minMicros then return {'session_budget_exceeded', sessionBudget, used, held} end
    if sessionBudget - used < grant then grant = sessionBudget - used end
  end
end

-- 6. Admitted: hold the grant in every window period (limited or not, so status shows all spend),
--    and count the request in the minute.
redis.call('HINCRBY', KEYS[2], 'requests', 1)
for i = 1, 5 do
  redis.call('HINCRBY', KEYS[1 + i], 'held', int(grant))
  redis.call('EXPIRE', KEYS[1 + i], ARGV[3 + i])
end

-- 7. The session counts one step and holds the grant (its limits were written in step 3).
local booked = {KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}
if hasSession then
  redis.call('HINCRBY', KEYS[7], 'held', int(grant))
  redis.call('HINCRBY', KEYS[7], 'steps', 1)
  redis.call('EXPIRE', KEYS[7], ARGV[12])
  booked[6] = KEYS[7]
end

-- 8. The reservation record: what is held and where, so extend, settle and abandon need no lookups.
--    Its TTL outlives every period key, so a hold is never released by expiry.
redis.call('HSET', KEYS[8], 'state', 'held', 'amount', int(grant), 'provider', ARGV[1],
  'booked', table.concat(booked, ' '), 'created_at', ARGV[14])
redis.call('EXPIRE', KEYS[8], ARGV[13])
return {'ok', grant}
