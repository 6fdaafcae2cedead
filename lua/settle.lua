--[[
settle: charge a request's actual cost and release its hold, exactly once per request id, in the
periods and session the reservation was booked in (even if the clock has since moved on).

KEYS[1..5]  booked period hashes  minute, hourly, daily, weekly, monthly (fields spent, held)
KEYS[6]     today's spend history lp:{h}:d:<YYYY-MM-DD> (a counter)
KEYS[7]     reservation record    lp:{h}:r:<requestId> (a string; a hash of an earlier release is read too)
KEYS[8]     booked session hash, only for a reservation booked in a session
KEYS[#KEYS] the loop scope the request's step was recorded in (lp:{h}:loop:<scope>), only when ARGV[3] is given
            (only the keys a settle touches are passed, and their arguments: each costs Redis time)

ARGV[1]     actualMicros (may exceed the reservation: the provider's bill is charged as it is)
ARGV[2]     unix time (seconds) at which the history counter expires
ARGV[3]     '<step>:<sinceMs>', the request's loop step and its first sighting (ms) when the request was admitted
            (only that window's entry is ended: the step's in flight field); absent when none was recorded

Returns one of
  {'settled', chargedMicros}
  {'already', chargedMicros}                     settled before: nothing changed
]]

local function int(n) return string.format('%d', n) end
local function num(v) if v then return tonumber(v) end return nil end
-- TTL seconds of the settled record or tombstone (a day: it only answers retries), SETTLED_RECORD_TTL_SECONDS of
-- src/budget/validate.ts, and of a period key found without one (recreated after it expired), PERIOD_GRACE_SECONDS
-- of src/budget/windows.ts (test/unit/lua-ttl-constants.test.ts holds them equal). Fixed by the release.
local settledTtl, periodGraceTtl = '86400', '86400'
local loopField = ARGV[3]
local hasSession = #KEYS == 9 or (#KEYS == 8 and not loopField)

-- 1. The record: a string, 'held <amount> …' or 'settled <charged>' (reserve.lua); a hash of an earlier release
--    (fields state, amount, charged) fails GET, and only then is read as one. Idempotent: a settled record (or
--    tombstone) reports its earlier charge and changes nothing.
local state, amount
local got = redis.pcall('GET', KEYS[7])
if type(got) == 'string' then
  state, amount = string.match(got, '^(%l+) (%d+)')
elseif got then
  local res = redis.call('HMGET', KEYS[7], 'state', 'amount', 'charged')
  state = res[1]
  if state == 'settled' then amount = res[3] else amount = res[2] end
end
if state == 'settled' then return {'already', num(amount) or 0} end

-- 2. What is held is the record's amount (it includes every extension). No record: nothing to
--    release, but the request did run, so its cost is still charged.
local reserved = 0
if state == 'held' then reserved = num(amount) or 0 end
local actual = tonumber(ARGV[1])

-- Charge `actual`, release up to `reserved` (held never goes below zero); returns whether the key held
-- nothing before (reserve creates every key it books with its hold in it). The common case, a key that
-- holds at least the reservation, is two increments; below that the hold is put right: clamped at zero,
-- or removed again where there was none (a key that expired meanwhile, or was only ever written here).
-- A key that must not be recreated (`existing`: the session) is booked only if it exists: a release that finds
-- it holding none of the reservation and made its only field created it, and deletes it again.
local release = int(-reserved)
local function book(key, existing)
  if reserved == 0 then
    -- No hold to release (settled without a record): read whether the key has one.
    if existing and redis.call('EXISTS', key) == 0 then return true end
    if actual > 0 then redis.call('HINCRBY', key, 'spent', ARGV[1]) end
    return redis.call('HEXISTS', key, 'held') == 0
  end
  local held = redis.call('HINCRBY', key, 'held', release)
  if existing and held + reserved <= 0 and redis.call('HLEN', key) == 1 then
    redis.call('DEL', key)
    return true
  end
  if actual > 0 then redis.call('HINCRBY', key, 'spent', ARGV[1]) end
  if held >= 0 then return false end
  if held + reserved > 0 then
    redis.call('HSET', key, 'held', '0')
    return false
  end
  redis.call('HDEL', key, 'held')
  return true
end

-- 3. Every booked period; one found without its held field expired meanwhile (or was only ever written
--    here) and, when recreated, gets a TTL. One with the field was created by reserve, which set its TTL.
for i = 1, 5 do
  if book(KEYS[i]) and redis.call('TTL', KEYS[i]) == -1 then redis.call('EXPIRE', KEYS[i], periodGraceTtl) end
end

-- 4. The session, unless it has expired meanwhile (it is not recreated; reserve writes its held and steps
--    together, so a session that exists has a field besides held).
if hasSession then book(KEYS[8], true) end

-- 5. Spend history: what was charged today, kept for 400 days. Only settle writes the counter, always with
--    its day's expiry, so the settle that creates it sets that expiry once.
if actual > 0 and redis.call('INCRBY', KEYS[6], ARGV[1]) == actual then redis.call('EXPIREAT', KEYS[6], ARGV[2]) end

-- 5b. The request's loop step has one fewer request in flight, in the window it was admitted in only: the
--     field '<step>:<sinceMs>' goes with its step (a new window, a trim, the scope's expiry), so one found
--     missing (now below zero) is removed again.
if loopField then
  if redis.call('HINCRBY', KEYS[#KEYS], loopField, -1) < 0 then redis.call('HDEL', KEYS[#KEYS], loopField) end
end

-- 6. Mark settled; a missing record becomes a tombstone so a late reserve with this id is refused. SET replaces
--    a held record (of any type) with only what a settled one answers, and its TTL.
redis.call('SET', KEYS[7], 'settled ' .. ARGV[1], 'EX', settledTtl)
return {'settled', actual}
