--[[
settle: charge a request's actual cost and release its hold, exactly once per request id, in the
periods and session the reservation was booked in (even if the clock has since moved on).

KEYS[1]     current periods       lp:{h}:cur, the string layout's five current periods (reserve.lua)
            or, while the store is not marked for the string layout (lp:layout, read by the caller once a minute),
KEYS[1..5]  the booked period hashes lp:{h}:w:<window>:<period id>, minute to monthly, and every key below four
            places on (told by #KEYS: 3 to 5, or 7 to 9). Either way both layouts are handled: the keys not passed are
            named here.
KEYS[2]     today's spend history lp:{h}:d:<YYYY-MM-DD> (a counter)
KEYS[3]     reservation record    lp:{h}:r:<requestId> (a string; a hash of an earlier release is read too)
KEYS[4]     booked session hash, only for a reservation booked in a session
KEYS[#KEYS] the loop scope the request's step was recorded in (lp:{h}:loop:<scope>), only when ARGV[3] is given
            (only the keys a settle touches are passed, and their arguments: each costs Redis time)
Not passed: the booked period hashes lp:{h}:w:<window>:<period id> (spent, held), named here from KEYS[1] and ARGV[2],
            or the string, named from today's history key (in the key's {tag}, so in its slot)

ARGV[1]     actualMicros (may exceed the reservation: the provider's bill is charged as it is)
ARGV[2]     the five booked period ids, minute to monthly, space separated (those of the record's created_at)
ARGV[3]     '<step>:<sinceMs>', the request's loop step and its first sighting (ms) when the request was admitted
            (only that window's entry is ended: the step's in flight field); absent when none was booked (a step's
            first request in its window is not: it is in flight while its record is held, which this script ends)
(When the history counter expires is told by its name, today's history key: an argument costs Redis time on every call.)

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
-- With the period hashes passed (KEYS[1..5]), every other key comes four places on, and ARGV[2] is not passed (the ids
-- are read from the hashes' names, and the string's name made from today's history key, '<tag>d:YYYY-MM-DD', only
-- where the string is read): the loop field comes one place earlier.
local curName, todayName, recordName, bookedIds, loopField, base = KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[3], 0
if #KEYS >= 7 then curName, todayName, recordName, bookedIds, loopField, base = nil, KEYS[6], KEYS[7], nil, ARGV[2], 4 end
local periodsPassed = base == 4
local hasSession = #KEYS == base + 5 or (#KEYS == base + 4 and not loopField)

-- 1. The record: a string, 'held <amount> …' or 'settled <charged>' (reserve.lua), read and marked settled in one
--    call (SET … GET: one call where a GET and a SET were two); 'kept <amount> …' is held in the string layout: what was held becomes 'settled <actual>' with a
--    settled record's TTL, and a missing record a tombstone of that charge, so a late reserve with this id is
--    refused. A hash of an earlier release (fields state, amount, charged) fails SET … GET, which then writes
--    nothing, and only then is read as one (and marked settled in step 6). Idempotent: a settled record (or
--    tombstone) reports its earlier charge and changes nothing but its TTL, which is a settled record's again (a
--    retry keeps it at most a day longer).
local state, amount
local settledRecord = 'settled ' .. ARGV[1]
local got = redis.pcall('SET', recordName, settledRecord, 'EX', settledTtl, 'GET')
local kind = type(got)
local marked = kind ~= 'table'
if kind == 'string' then
  state, amount = string.match(got, '^(%l+) (%d+)')
  if state == 'settled' then
    redis.call('SET', recordName, got, 'KEEPTTL')
    return {'already', tonumber(amount) or 0}
  end
elseif not marked then
  -- Any other failure (out of memory: nothing was written) is the script's, as it is.
  if not string.find(got.err, 'WRONGTYPE', 1, true) then return got end
  local res = redis.call('HMGET', recordName, 'state', 'amount', 'charged')
  state = res[1]
  if state == 'settled' then amount = res[3] else amount = res[2] end
  if state == 'settled' then return {'already', tonumber(amount) or 0} end
end

-- 2. What is held is the record's amount (it includes every extension). No record: nothing to
--    release, but the request did run, so its cost is still charged. A 'kept' hold's is read as a number after the
--    string (step 3), only where it is reckoned with: a hold alone in flight without a session never is (reading a
--    text as a number costs ~1k instructions, strtod).
local reserved = 0
if state == 'held' then reserved = (amount or 0) + 0 end
local actual = ARGV[1] + 0

-- 3. Each booked period: charge `actual`, release up to `reserved` (held never goes below zero). Where it lives: in
--    the string curName while it is current there (its id in the string's), else in its own hash. A hold booked in
--    the string layout ('kept') knows that from the string; any other (booked in a hash, or no record) tries the
--    hash first, and the tombstone there (WRONGTYPE) tells it the key switched since: the period is in the string,
--    read only then. Nearly always a 'kept' hold's periods are all current: the string's ids are ARGV[2] itself, and
--    its ten counts are rewritten in one SET.
-- sameHeld: the string's held when every window holds the same (nearly always, as reserve.lua's), as its text; its other
-- texts are then written back as read, or formatted only where they change (each number formatted costs a sprintf).
local s1, h1, s2, h2, s3, h3, s4, h4, s5, h5, curRequests, curIds, sameHeld
local curRead = false
if state == 'kept' then
  if not curName then
    curName = string.sub(todayName, 1, #todayName - 12) .. 'cur'
    local idAt = '^[^}]*}:w:%a+:(.*)$'
    bookedIds = string.match(KEYS[1], idAt) .. ' ' .. string.match(KEYS[2], idAt) .. ' ' .. string.match(KEYS[3], idAt) ..
      ' ' .. string.match(KEYS[4], idAt) .. ' ' .. string.match(KEYS[5], idAt)
  end
  local v = redis.call('GET', curName)
  curRead = true
  if v then
    -- The five held equal, matched by a back reference: 8 captures where 12 cost more (each capture is a string made).
    s1, h1, s2, s3, s4, s5, curRequests, curIds =
      string.match(v, '^(%d+) (%d+) (%d+) %2 (%d+) %2 (%d+) %2 (%d+) %2 (%d+) (.*)$')
    if curIds == bookedIds then
      sameHeld = h1
    else
      s1, h1, s2, h2, s3, h3, s4, h4, s5, h5, curRequests, curIds =
        string.match(v, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (.*)$')
    end
  end
  -- Read below unless the string holds exactly this hold in every window and no session is to be released.
  if sameHeld ~= amount or hasSession then reserved = (amount or 0) + 0 end
end
-- A hold booked in the period hashes passed (nearly always, on a store not marked): each released in its hash, as before
-- the string layout, until one holds a tombstone (the key switched since: nothing was written there); from that period
-- on, the general path below. (This loop costs a settle about 5% fewer instructions than the general one.)
local from = 1
if periodsPassed and state == 'held' and reserved > 0 then
  local release = '-' .. amount
  from = 6
  for i = 1, 5 do
    local key, created = KEYS[i], false
    local held = redis.pcall('HINCRBY', key, 'held', release)
    if type(held) == 'table' then
      if not string.find(held.err, 'WRONGTYPE', 1, true) then return held end
      from = i
      break
    end
    if actual > 0 then redis.call('HINCRBY', key, 'spent', ARGV[1]) end
    if held < 0 then
      if held + reserved > 0 then
        redis.call('HSET', key, 'held', '0')
      else
        redis.call('HDEL', key, 'held')
        created = true
      end
    end
    if created and redis.call('TTL', key) == -1 then redis.call('EXPIRE', key, periodGraceTtl) end
  end
end
if from == 6 then
  -- (Every period released above.)
elseif sameHeld then
  -- Held exactly this hold (a request alone in flight): none left, and the pattern a constant (joining one costs a
  -- settle ~1.5k instructions, bench/settle-split.mjs --lone).
  local held, pattern = '0', '%d 0 %d 0 %d 0 %d 0 %d 0 '
  if sameHeld ~= amount then
    local left = sameHeld - reserved
    if left > 0 then
      held = string.format('%d', left)
      pattern = '%d ' .. held .. ' %d ' .. held .. ' %d ' .. held .. ' %d ' .. held .. ' %d ' .. held .. ' '
    end
  end
  local value
  if actual > 0 then
    -- One format of the five spent, the held's text in its pattern (digits only): one call where five were.
    value = string.format(pattern, s1 + actual, s2 + actual, s3 + actual, s4 + actual, s5 + actual) .. curRequests .. ' ' ..
      curIds
  else
    value = s1 .. ' ' .. held .. ' ' .. s2 .. ' ' .. held .. ' ' .. s3 .. ' ' .. held .. ' ' .. s4 .. ' ' .. held .. ' ' .. s5 ..
      ' ' .. held .. ' ' .. curRequests .. ' ' .. curIds
  end
  redis.call('SET', curName, value, 'KEEPTTL')
elseif state == 'kept' and curIds == bookedIds then
  h1, h2, h3, h4, h5 = h1 - reserved, h2 - reserved, h3 - reserved, h4 - reserved, h5 - reserved
  if h1 < 0 then h1 = 0 end
  if h2 < 0 then h2 = 0 end
  if h3 < 0 then h3 = 0 end
  if h4 < 0 then h4 = 0 end
  if h5 < 0 then h5 = 0 end
  -- The two texts joined, not formatted: Lua 5.1 formats a %s shorter than 100 characters through sprintf.
  redis.call('SET', curName, string.format('%d %d %d %d %d %d %d %d %d %d ', s1 + actual, h1, s2 + actual, h2,
    s3 + actual, h3, s4 + actual, h4, s5 + actual, h5) .. curRequests .. ' ' .. curIds, 'KEEPTTL')
else
  -- curs: the string's counts once one of its periods is settled; current: its period ids.
  -- booked: the ids of ARGV[2], read where compared with the string's or a hash is named.
  local curs, current, booked, names, prefix
  if not periodsPassed or curIds then booked = {string.match(bookedIds, '^(%S+) (%S+) (%S+) (%S+) (%S+)$')} end
  if not periodsPassed then
    names = {'minute', 'hourly', 'daily', 'weekly', 'monthly'}
    prefix = string.sub(KEYS[1], 1, #KEYS[1] - 3) .. 'w:'
  end
  local release = reserved > 0 and '-' .. amount
  for i = from, 5 do
    local inCur = false
    if state == 'kept' and curIds then
      current = current or {string.match(curIds, '^(%S+) (%S+) (%S+) (%S+) (%S+)$')}
      inCur = current[i] == booked[i]
    end
    if not inCur then
      -- Its hash (the hash layout's, or a turned period's). The first command on it is the one that can meet the
      -- tombstone: it fails then with nothing written.
      local key = KEYS[i]
      if not periodsPassed then key = prefix .. names[i] .. ':' .. booked[i] end
      local created, first = false, nil
      if reserved == 0 then
        first = redis.pcall('HEXISTS', key, 'held')
      else
        first = redis.pcall('HINCRBY', key, 'held', release)
      end
      if type(first) == 'table' then
        if not string.find(first.err, 'WRONGTYPE', 1, true) then return first end
        -- The tombstone: current in the string (nothing else names it), unless the string went (then it is lost).
        if not curRead then
          if not curName then
            curName = string.sub(todayName, 1, #todayName - 12) .. 'cur'
            local idAt = '^[^}]*}:w:%a+:(.*)$'
            bookedIds = string.match(KEYS[1], idAt) .. ' ' .. string.match(KEYS[2], idAt) .. ' ' .. string.match(KEYS[3], idAt) ..
              ' ' .. string.match(KEYS[4], idAt) .. ' ' .. string.match(KEYS[5], idAt)
          end
          local v = redis.call('GET', curName)
          curRead = true
          if v then
            s1, h1, s2, h2, s3, h3, s4, h4, s5, h5, curRequests, curIds =
              string.match(v, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (.*)$')
          end
        end
        if curIds then
          current = current or {string.match(curIds, '^(%S+) (%S+) (%S+) (%S+) (%S+)$')}
          booked = booked or {string.match(bookedIds, '^(%S+) (%S+) (%S+) (%S+) (%S+)$')}
          inCur = current[i] == booked[i]
        end
      elseif reserved == 0 then
        created = first == 0
        if actual > 0 then redis.call('HINCRBY', key, 'spent', ARGV[1]) end
      else
        local held = first
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
      if created and redis.call('TTL', key) == -1 then redis.call('EXPIRE', key, periodGraceTtl) end
    end
    if inCur then
      curs = curs or {s1 + 0, h1 + 0, s2 + 0, h2 + 0, s3 + 0, h3 + 0, s4 + 0, h4 + 0, s5 + 0, h5 + 0}
      local held = curs[2 * i] - reserved
      if held < 0 then held = 0 end
      curs[2 * i - 1], curs[2 * i] = curs[2 * i - 1] + actual, held
    end
  end
  if curs then
    redis.call('SET', curName, string.format('%d %d %d %d %d %d %d %d %d %d ', curs[1], curs[2], curs[3], curs[4],
      curs[5], curs[6], curs[7], curs[8], curs[9], curs[10]) .. curRequests .. ' ' .. curIds, 'KEEPTTL')
  end
end

-- 4. The booked session: the same, in its hash. It is not recreated once it has expired: reserve writes its held and
--    steps together, so a release that finds it holding none of the reservation and made its only field created it,
--    and deletes it again.
if hasSession then
  local key = KEYS[base + 4]
  if reserved == 0 then
    if actual > 0 and redis.call('EXISTS', key) == 1 then redis.call('HINCRBY', key, 'spent', ARGV[1]) end
  else
    local held = redis.call('HINCRBY', key, 'held', '-' .. amount)
    if held + reserved <= 0 and redis.call('HLEN', key) == 1 then
      redis.call('DEL', key)
    else
      if actual > 0 then redis.call('HINCRBY', key, 'spent', ARGV[1]) end
      if held < 0 then
        if held + reserved > 0 then redis.call('HSET', key, 'held', '0') else redis.call('HDEL', key, 'held') end
      end
    end
  end
end

-- 5. Spend history: what was charged today, kept for historyDays days. Only settle writes the counter, always
--    with its day's expiry, so the settle that creates it sets that expiry once: historyDays days after the end of
--    the day its name ends with ('…:d:YYYY-MM-DD'), unix seconds (days since the epoch of a proleptic Gregorian
--    date, as the civil-from-days algorithm's inverse; exact in doubles).
if actual > 0 and redis.call('INCRBY', todayName, ARGV[1]) == actual then
  local y, m, d = string.match(todayName, '(%d%d%d%d)%-(%d%d)%-(%d%d)$')
  y, m, d = y + 0, m + 0, d + 0
  if m <= 2 then y = y - 1 end
  local era = (y - y % 400) / 400
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2 - (153 * mp + 2) % 5) / 5 + d - 1
  local doe = yoe * 365 + (yoe - yoe % 4) / 4 - (yoe - yoe % 100) / 100 + doy
  local day = era * 146097 + doe - 719468
  redis.call('EXPIREAT', todayName, string.format('%d', (day + 1 + historyDays) * 86400))
end

-- 5b. The request's loop step has one fewer request in flight, in the window it was admitted in only: the
--     field '<step>:<sinceMs>' goes with its step (a new window, a trim, the scope's expiry), so one found
--     missing (now below zero) is removed again.
if loopField then
  if redis.call('HINCRBY', KEYS[#KEYS], loopField, '-1') < 0 then redis.call('HDEL', KEYS[#KEYS], loopField) end
end

-- 6. A hash record of an earlier release is marked settled now: SET replaces it with only what a settled one
--    answers, and its TTL.
if not marked then redis.call('SET', recordName, settledRecord, 'EX', settledTtl) end
return actual
