--[[
settle: charge a request's actual cost and release its hold, exactly once per request id, in the
periods and session the reservation was booked in (even if the clock has since moved on).

KEYS[1..5]  booked period hashes  minute, hourly, daily, weekly, monthly (fields spent, held)
KEYS[6]     today's spend history lp:{h}:d:<YYYY-MM-DD> (a counter)
KEYS[7]     reservation record    lp:{h}:r:<requestId> (a string; a hash of an earlier release is read too)
KEYS[8]     booked session hash, only for a reservation booked in a session
KEYS[#KEYS] the loop scope the request's step was recorded in (lp:{h}:loop:<scope>), only when ARGV[2] is given
            (only the keys a settle touches are passed, and their arguments: each costs Redis time)

ARGV[1]     actualMicros (may exceed the reservation: the provider's bill is charged as it is)
ARGV[2]     '<step>:<sinceMs>', the request's loop step and its first sighting (ms) when the request was admitted
            (only that window's entry is ended: the step's in flight field); absent when none was booked (a step's
            first request in its window is not: it is in flight while its record is held, which this script ends)
(When the history counter expires is told by its name, KEYS[6]: an argument costs Redis time on every call.)

Returns one of
  chargedMicros                                  settled now (an integer, not a list: a list reply costs Redis more)
  {'already', chargedMicros}                     settled before: nothing changed
]]

-- No helper functions: each is a closure made on every call (garbage for Lua's collector). Integers the caller and
-- the scripts wrote are read by arithmetic (x + 0), not tonumber, which converts a text twice (Lua 5.1).
-- TTL seconds of the settled record or tombstone (a day: it only answers retries), SETTLED_RECORD_TTL_SECONDS of
-- src/budget/validate.ts, and of a period key found without one (recreated after it expired), PERIOD_GRACE_SECONDS
-- of src/budget/windows.ts (test/unit/lua-ttl-constants.test.ts holds them equal). Fixed by the release.
local settledTtl, periodGraceTtl = '86400', '86400'
-- HISTORY_DAYS of src/budget/history.ts (test/unit/lua-ttl-constants.test.ts holds it equal): a day's counter
-- expires that many days after the day ends.
local historyDays = 400
local loopField = ARGV[2]
local hasSession = #KEYS == 9 or (#KEYS == 8 and not loopField)

-- 1. The record: a string, 'held <amount> …' or 'settled <charged>' (reserve.lua), read and marked settled in one
--    call (SET … GET: one call where a GET and a SET were two): what was held becomes 'settled <actual>' with a
--    settled record's TTL, and a missing record a tombstone of that charge, so a late reserve with this id is
--    refused. A hash of an earlier release (fields state, amount, charged) fails SET … GET, which then writes
--    nothing, and only then is read as one (and marked settled in step 6). Idempotent: a settled record (or
--    tombstone) reports its earlier charge and changes nothing but its TTL, which is a settled record's again (a
--    retry keeps it at most a day longer).
local state, amount
local settledRecord = 'settled ' .. ARGV[1]
local got = redis.pcall('SET', KEYS[7], settledRecord, 'EX', settledTtl, 'GET')
local kind = type(got)
local marked = kind ~= 'table'
if kind == 'string' then
  state, amount = string.match(got, '^(%l+) (%d+)')
  if state == 'settled' then
    redis.call('SET', KEYS[7], got, 'KEEPTTL')
    return {'already', tonumber(amount) or 0}
  end
elseif not marked then
  -- Any other failure (out of memory: nothing was written) is the script's, as it is.
  if not string.find(got.err, 'WRONGTYPE', 1, true) then return got end
  local res = redis.call('HMGET', KEYS[7], 'state', 'amount', 'charged')
  state = res[1]
  if state == 'settled' then amount = res[3] else amount = res[2] end
  if state == 'settled' then return {'already', tonumber(amount) or 0} end
end

-- 2. What is held is the record's amount (it includes every extension). No record: nothing to
--    release, but the request did run, so its cost is still charged.
local reserved = 0
if state == 'held' then reserved = (amount or 0) + 0 end
local actual = ARGV[1] + 0

-- 3. Every booked period, then the booked session: charge `actual`, release up to `reserved` (held never goes below
--    zero). The common case, a key that holds at least the reservation, is two increments; below that the hold is
--    put right: clamped at zero, or removed again where there was none (a key that expired meanwhile, or was only
--    ever written here). A period that held nothing before (`created`: reserve creates every key it books with its
--    hold in it) gets a TTL if it has none; one with the field was created by reserve, which set its TTL.
--    The session is not recreated once it has expired: reserve writes its held and steps together, so a release
--    that finds it holding none of the reservation and made its only field created it, and deletes it again.
-- The release as text: the record's amount negated (its digits as reserve and extend wrote them: no format call).
local release = reserved > 0 and '-' .. amount
local last = 5
if hasSession then last = 6 end
for i = 1, last do
  local key, isSession, created = KEYS[i], i == 6, false
  if isSession then key = KEYS[8] end
  if reserved == 0 then
    -- No hold to release (settled without a record): read whether the key has one.
    if not (isSession and redis.call('EXISTS', key) == 0) then
      if actual > 0 then redis.call('HINCRBY', key, 'spent', ARGV[1]) end
      created = not isSession and redis.call('HEXISTS', key, 'held') == 0
    end
  else
    local held = redis.call('HINCRBY', key, 'held', release)
    if isSession and held + reserved <= 0 and redis.call('HLEN', key) == 1 then
      redis.call('DEL', key)
    else
      if actual > 0 then redis.call('HINCRBY', key, 'spent', ARGV[1]) end
      if held < 0 then
        if held + reserved > 0 then
          redis.call('HSET', key, 'held', '0')
        else
          redis.call('HDEL', key, 'held')
          created = true
        end
      end
    end
  end
  if created and not isSession and redis.call('TTL', key) == -1 then redis.call('EXPIRE', key, periodGraceTtl) end
end

-- 5. Spend history: what was charged today, kept for historyDays days. Only settle writes the counter, always
--    with its day's expiry, so the settle that creates it sets that expiry once: historyDays days after the end of
--    the day its name ends with ('…:d:YYYY-MM-DD'), unix seconds (days since the epoch of a proleptic Gregorian
--    date, as the civil-from-days algorithm's inverse; exact in doubles).
if actual > 0 and redis.call('INCRBY', KEYS[6], ARGV[1]) == actual then
  local y, m, d = string.match(KEYS[6], '(%d%d%d%d)%-(%d%d)%-(%d%d)$')
  y, m, d = y + 0, m + 0, d + 0
  if m <= 2 then y = y - 1 end
  local era = (y - y % 400) / 400
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2 - (153 * mp + 2) % 5) / 5 + d - 1
  local doe = yoe * 365 + (yoe - yoe % 4) / 4 - (yoe - yoe % 100) / 100 + doy
  local day = era * 146097 + doe - 719468
  redis.call('EXPIREAT', KEYS[6], string.format('%d', (day + 1 + historyDays) * 86400))
end

-- 5b. The request's loop step has one fewer request in flight, in the window it was admitted in only: the
--     field '<step>:<sinceMs>' goes with its step (a new window, a trim, the scope's expiry), so one found
--     missing (now below zero) is removed again.
if loopField then
  if redis.call('HINCRBY', KEYS[#KEYS], loopField, '-1') < 0 then redis.call('HDEL', KEYS[#KEYS], loopField) end
end

-- 6. A hash record of an earlier release is marked settled now: SET replaces it with only what a settled one
--    answers, and its TTL.
if not marked then redis.call('SET', KEYS[7], settledRecord, 'EX', settledTtl) end
return actual
