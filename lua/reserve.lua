--[[
reserve: admit a request by holding between minMicros and maxMicros in all five window periods and
the session, atomically, or hold nothing and say why. Money is integer micro-USD.

KEYS[1]     key record hash       lp:{h}:key  (active, providers, lim:<window>, session_budget, session_max_steps,
                                  unlimited, rpm, layout, loop_limit, loop_window; table, written here, never read)
KEYS[2]     current periods       lp:{h}:cur, the string layout (a key whose record has layout = '1'): one string,
                                  '<spent> <held>' of each window minute to monthly, the minute's admitted requests,
                                  then the five period ids those are of ('<id1> … <id5>', as ARGV[5])
            or, while the store is not marked for the string layout (lp:layout, read by the caller once a minute),
KEYS[2..6]  the current period hashes lp:{h}:w:<window>:<period id>, minute to monthly (the hash layout's), and every
            key below four places on (told by #KEYS: 3 to 5, or 7 to 9). Either way both layouts are handled: the
            keys not passed are named here.
KEYS[3]     reservation record    lp:{h}:r:<requestId>
KEYS[4]     session hash          lp:{h}:s:<id> (budget, max_steps, steps, spent, held, loop_limit), only for a
                                  request with a session (#ARGV is 9 or 11)
KEYS[#KEYS] loop state of a scope lp:{h}:loop:<scope> (field <step> = '<count>:<sinceMs>#<request id>', the id of
                                  the window's first request, in flight while its record is held; field <step>:<sinceMs>
                                  = the step's other requests in flight, once there were any; '#e' = when the scope
                                  expires, ms, 65 characters (zero-padded: a hash table), negated once its steps by age
                                  index it), only for a loop check (#ARGV is 7 or 11; not for a check asked without its
                                  scope and step). (The previous release's '<count>:<sinceMs>' has all in flight in
                                  the field.)
            (only the keys a request can touch are passed, and their arguments: each costs Redis time)
Not passed (in the key's {tag}, so in its slot; named here from KEYS[1] or KEYS[#KEYS]):
            the period hashes lp:{h}:w:<window>:<period id> (spent, held; the minute's also requests), the hash
            layout's periods (a key without layout) and the string layout's turned periods; while a period is current
            in lp:{h}:cur its hash's name holds the string 'cur' (a tombstone: a hash command there fails WRONGTYPE,
            so settle and extend of a hold booked in the hash before the key switched apply it to the string, and a
            previous release's script fails closed); the loop scope's steps by age, lp:{h}:loopt:<scope> (sorted set:
            member <step>, score its sinceMs) of a scope that once grew past the steps kept per scope, only on the rare
            paths that touch it

ARGV[1]     provider id
ARGV[2]     minMicros
ARGV[3]     maxMicros (>= minMicros)
ARGV[4]     current time, ISO 8601, the time of the periods ARGV[5] names (kept on the record: it names them)
ARGV[5]     the five current period ids, minute to monthly, space separated
With a session, ARGV[6..9]:
            session budget the request asks for (micros), or ''; session max steps it asks for, or '';
            session TTL seconds; session loop limit it asks for (X-Loopers-Loop-Limit), or ''
With a loop check, the last two:
            the request's loop step (16 hex chars); current time, ms since the epoch, an integer (loop windows;
            its text is a new step's sinceMs)
or, with a loop check asked without its scope and step (its caller computes them only when a limit may be in force),
the last one: '?'. Admitted as no check while no limit is in force (the key's loop_limit '0' and no session limit);
otherwise answered {'loop_needed'} with nothing written, and the caller sends the request again with its check.

Returns one of
  remainingMicros                                admitted with maxMicros, no loop step booked (nearly always: the
                                                 first request of a step in its window is not booked either):
                                                 an integer, -1 when nothing is limited
  '<grantedMicros> <remainingMicros> <loopSinceMs>'
                                                 admitted otherwise (a reply that is one value, not a list: a list
                                                 costs Redis more, as does formatting a number)
                                                 remaining: what the tightest limited window or the session
                                                 has left after this hold, '' when nothing is limited;
                                                 loopSinceMs: the step's sinceMs when this request was booked in
                                                 its in flight field (the caller books
                                                 '<KEYS[#KEYS]>#<sinceMs>#<step>', which settle ends in
                                                 flight), else ''
  {'invalid_key'} | {'key_revoked'} | {'provider_not_allowed'}
  {'budget_not_set'}                             no window is limited and the key is not marked unlimited
  {'duplicate'}                                  the request id was used before (a fault, not a refusal)
  {'budget_exceeded', windowIndex 1..5, limitMicros, spentPlusHeldMicros, heldMicros}
  {'session_steps_exceeded', maxSteps, steps}
  {'session_budget_exceeded', budgetMicros, spentPlusHeldMicros, heldMicros}
  {'rate_limited', rpm, requestsThisMinute}
  {'loop_detected', step, repeats, loopLimit}
  {'loop_needed'}                                a check asked without its scope and step while a limit is in force
                                                 (nothing written: the same request id is sent again with them)
]]

-- Lua numbers are doubles; how Redis turns one into a command argument differs between versions
-- (tostring() would print 1e+15), so integers are formatted explicitly (format('%d', n)). tonumber reads a field HMGET
-- found missing (false) as nil. A text this script or the caller wrote as an integer is read by arithmetic (x + 0),
-- not tonumber: that converts it twice (Lua 5.1 checks it is a number, then converts it: strtod each time), an
-- arithmetic operand once. A limit most keys leave unset (false) is tested before tonumber is called on it: a call of a
-- C function costs more than the test. No helper functions on the paths every request takes: each is a closure made
-- on every call (garbage for Lua's collector).
local format = string.format

-- A session's and a loop check's keys and arguments, passed only when the request has them (nil without): told by
-- the arguments' count, 5 plus 4 for a session and 2 for a loop check (1 for one asked without its scope and step).
-- The period hashes passed (KEYS[2..6]): the reservation record is KEYS[7], ARGV[5] is not passed (the ids are read
-- from the hashes' names, and the string's name made, only for a key on the string layout), and every argument after
-- it comes one place earlier.
local periodsPassed = #KEYS >= 7
local curName, recordName, periodIds, o = KEYS[2], KEYS[3], ARGV[5], 1
if periodsPassed then curName, recordName, periodIds, o = nil, KEYS[7], nil, 0 end
local hasSession, hasLoop = #ARGV - o >= 8, #ARGV - o == 6 or #ARGV - o == 10
local loopAsked = #ARGV - o == 5 or #ARGV - o == 9
local sessionKey, askedBudget, askedMaxSteps, sessionTtl, askedLoopLimit
if hasSession then
  sessionKey, askedBudget, askedMaxSteps, sessionTtl, askedLoopLimit = KEYS[periodsPassed and 8 or 4], ARGV[o + 5],
    ARGV[o + 6], ARGV[o + 7], ARGV[o + 8]
end
local loopKey, loopAgeKey, step, nowMs
if hasLoop then
  loopKey, step = KEYS[#KEYS], ARGV[#ARGV - 1]
end
-- The loop rule's constants, as src/loop/rule.ts has them (test/unit/lua-loop-constants.test.ts holds them equal):
-- DEFAULT_LOOP_LIMIT (a key without loop_limit), DEFAULT_LOOP_WINDOW_SECONDS (without loop_window),
-- LOOP_STEPS_PER_SCOPE, LOOP_STEPS_AFTER_TRIM, LOOP_IN_FLIGHT_TOLERATED. Fixed by the release, so no arguments.
local defaultLoopLimit, defaultLoopWindow, stepsKept, stepsAfterTrim, inFlightTolerated = 10, 600, 256, 192, 1
-- The reservation record's TTL, RESERVATION_TTL_SECONDS of src/budget/validate.ts, and how long a period key outlives
-- its period, PERIOD_GRACE_SECONDS of src/budget/windows.ts (test/unit/lua-ttl-constants.test.ts holds them equal).
local recordTtl, periodGrace = '3024000', 86400
-- The string layout's lp:{h}:cur lives a month and a grace past its last turn (it holds the month's period).
local curTtl = '2764800'
-- TABLE_FIELD and TABLE_VALUE of src/budget/redis/redis-keys.ts (test/unit/lua-ttl-constants.test.ts holds them equal):
-- a key record holding it is a hash table, whose HMGET above finds each field by its hash, not by a listpack scan.
local tableField, tableValue = 'table', '00000000000000000000000000000000000000000000000000000000000000000'

-- 1. The key must exist, be active, allow this provider, and have a limit in some window or be
--    marked unlimited. Its loop defaults are read only for a request with a loop check, its session defaults
--    only for one with a session, which reads both (each field read costs Redis time).
local rec
if hasSession then
  rec = redis.call('HMGET', KEYS[1], 'active', 'providers', 'lim:minute', 'lim:hourly', 'lim:daily', 'lim:weekly',
    'lim:monthly', 'unlimited', 'rpm', 'layout', 'loop_limit', 'loop_window', 'session_budget', 'session_max_steps')
elseif hasLoop or loopAsked then
  rec = redis.call('HMGET', KEYS[1], 'active', 'providers', 'lim:minute', 'lim:hourly', 'lim:daily', 'lim:weekly',
    'lim:monthly', 'unlimited', 'rpm', 'layout', 'loop_limit', 'loop_window')
else
  rec = redis.call('HMGET', KEYS[1], 'active', 'providers', 'lim:minute', 'lim:hourly', 'lim:daily', 'lim:weekly',
    'lim:monthly', 'unlimited', 'rpm', 'layout')
end
if not rec[1] then return {'invalid_key'} end
if rec[1] ~= '1' then return {'key_revoked'} end
-- A key of this provider alone is told by one comparison (interned strings), without building the two texts.
if rec[2] ~= ARGV[1] and not string.find(',' .. (rec[2] or '') .. ',', ',' .. ARGV[1] .. ',', 1, true) then
  return {'provider_not_allowed'}
end
if rec[8] ~= '1' and not (rec[3] or rec[4] or rec[5] or rec[6] or rec[7]) then return {'budget_not_set'} end

-- 2. A request id is used once: a held, settled or tombstoned record means a caller fault, answered before any
--    check below and with nothing written. Steps 3 to 5 only read, and so decide a verdict: a refusal asks whether
--    the id was used (step 5a), an admission learns it from the record's SET NX (step 5b): no EXISTS when admitted.

local minMicros = ARGV[2] + 0
local maxMicros = ARGV[3] + 0
local grant = maxMicros

-- 3. The session's limits are the lowest of what it has, what this request asks and the key's
--    defaults, so they can be lowered and never raised. A lowering sticks even when this request is
--    refused (CONTRACT §4), and every request with a session keeps that session alive, admitted or not:
--    both are written with the verdict (steps 5a and 7), the lowered limits here only listed.
-- limits: the lowered ones as HSET arguments, nil when none is (nearly always).
local s, sessionBudget, sessionMaxSteps, sessionLoop, limits
if hasSession then
  -- The smaller of two optional limits; nil means "no limit".
  local function lowest(a, b)
    if a == nil then return b end
    if b == nil or a <= b then return a end
    return b
  end
  s = redis.call('HMGET', sessionKey, 'budget', 'max_steps', 'steps', 'spent', 'held', 'loop_limit')
  -- The session's own limits, written by this script as integers: each read once.
  local ownBudget, ownMaxSteps, ownLoop = s[1] and s[1] + 0 or nil, s[2] and s[2] + 0 or nil, s[6] and s[6] + 0 or nil
  sessionBudget = lowest(lowest(ownBudget, tonumber(askedBudget)), tonumber(rec[13]))
  sessionMaxSteps = lowest(lowest(ownMaxSteps, tonumber(askedMaxSteps)), tonumber(rec[14]))
  sessionLoop = lowest(ownLoop, tonumber(askedLoopLimit))
  local lowerBudget = sessionBudget and sessionBudget ~= ownBudget
  local lowerMaxSteps = sessionMaxSteps and sessionMaxSteps ~= ownMaxSteps
  local lowerLoop = sessionLoop and sessionLoop ~= ownLoop
  if lowerBudget or lowerMaxSteps or lowerLoop then
    limits = {}
    if lowerBudget then limits[#limits + 1] = 'budget'; limits[#limits + 1] = format('%d', sessionBudget) end
    if lowerMaxSteps then limits[#limits + 1] = 'max_steps'; limits[#limits + 1] = format('%d', sessionMaxSteps) end
    if lowerLoop then limits[#limits + 1] = 'loop_limit'; limits[#limits + 1] = format('%d', sessionLoop) end
  end
end

-- 3a. The loop guard (src/loop/README.md): a step repeated more than loopLimit times within the
--     window (counted from the step's first sighting) is refused. The key's limit (default defaultLoopLimit,
--     0 = off) is lowered by the session's.
--     With the guard off (no limit in force) nothing is read or recorded.
local refusal
local loopCount, loopSince, loopSinceText, loopInFlight, loopWindowMs, loopLimit, loopNewSince, loopIsNew, loopExpires, loopAged, loopStale, loopFirst
if hasLoop or loopAsked then
  -- The guard off on the key ('0', as on the bench's) told by one comparison, without a conversion.
  local keyLoop = 0
  if rec[11] ~= '0' then keyLoop = rec[11] and tonumber(rec[11]) or defaultLoopLimit end
  loopLimit = sessionLoop
  if keyLoop ~= 0 and not (sessionLoop and sessionLoop < keyLoop) then loopLimit = keyLoop end
  if not loopLimit then hasLoop = false
  -- Asked without its scope and step while a limit is in force (the key's, or a session's): never admitted unchecked.
  -- Nothing is written yet; the caller sends it again with them.
  elseif loopAsked then return {'loop_needed'} end
end
if hasLoop then
  loopWindowMs = (rec[12] and tonumber(rec[12]) or defaultLoopWindow) * 1000
  loopSinceText = ARGV[#ARGV]
  nowMs = loopSinceText + 0
  loopCount, loopSince, loopInFlight, loopNewSince = 0, nowMs, 0, true
  local got = redis.call('HMGET', loopKey, step, '#e')
  local entry = got[1]
  loopIsNew, loopExpires = not entry, got[2] and got[2] + 0
  -- Indexed: '#e' negated. (A scope the previous release indexed marks it in '#z', not read: it is indexed again.)
  if loopExpires and loopExpires < 0 then loopExpires, loopAged = -loopExpires, true end
  if entry then
    local c, since, rest = string.match(entry, '^(%d+):(%d+)(.*)$')
    local sinceMs = c and since + 0
    if c and nowMs < sinceMs + loopWindowMs then
      loopCount, loopSince, loopSinceText, loopNewSince = c + 0, sinceMs, since, false
      -- In flight, read only once the request is admitted (7b): '#<request id>' (this layout) names the window's first
      -- request, in flight while its reservation record is held, and the field '<step>:<sinceMs>' counts the others;
      -- without it (the previous release's layout) that field counts them all; ':<n>' (an older one) holds them all.
      local mark = string.byte(rest, 1)
      if mark == 35 then loopFirst, loopInFlight = string.sub(rest, 2), nil
      elseif mark == 58 then loopInFlight = tonumber(string.sub(rest, 2)) or 0
      else loopInFlight = nil end
    elseif c then
      loopStale = since
    end
  end
  if loopCount > loopLimit then refusal = {'loop_detected', step, loopCount, loopLimit} end
end

-- 3b. The periods. A key whose record has layout = '1' keeps the five current ones in one string, curName (one GET
--     and one SET); the others in one hash each, periods[at + i]: KEYS[2..6] when passed, else named here from KEYS[1]
--     and ARGV[5].
-- curs: the string's spent and held of each window, in order. prefix: 'lp:{h}:' (KEYS[1] is 'lp:{h}:key'), made
-- only where a key is named.
local isString = rec[10] == '1'
local periods, at, curs, requests, turned
-- The string's current periods when every window holds the same (nearly always: a hold is booked in all five, and only
-- holds booked before a window turned make them differ): the spent of each window as its text, the held's text (curs
-- is not made then). Its texts are written back as they are read: each number formatted costs a sprintf.
local spent, heldText
if isString then
  if periodsPassed then
    local idAt = '^[^}]*}:w:%a+:(.*)$'
    curName = string.sub(KEYS[1], 1, #KEYS[1] - 3) .. 'cur'
    periodIds = string.match(KEYS[2], idAt) .. ' ' .. string.match(KEYS[3], idAt) .. ' ' .. string.match(KEYS[4], idAt) ..
      ' ' .. string.match(KEYS[5], idAt) .. ' ' .. string.match(KEYS[6], idAt)
  end
  local v = redis.call('GET', curName)
  local s1, h1, s2, h2, s3, h3, s4, h4, s5, h5, n, ids
  if v then
    -- The five held equal, matched by a back reference: 8 captures where 12 cost more (each capture is a string made).
    s1, h1, s2, s3, s4, s5, n, ids = string.match(v, '^(%d+) (%d+) (%d+) %2 (%d+) %2 (%d+) %2 (%d+) %2 (%d+) (.*)$')
    if ids == periodIds then
      spent, heldText = {s1, s2, s3, s4, s5}, h1
    else
      s1, h1, s2, h2, s3, h3, s4, h4, s5, h5, n, ids =
        string.match(v, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (.*)$')
    end
  end
  if spent then
    requests = n + 0
  elseif ids == periodIds then
    curs = {s1 + 0, h1 + 0, s2 + 0, h2 + 0, s3 + 0, h3 + 0, s4 + 0, h4 + 0, s5 + 0, h5 + 0}
    requests = n + 0
  else
    -- A window turned (once a minute at most), or the key's first request in this layout (no string yet: the fold).
    -- Each period whose id changed moves aside into its own hash (its name held the tombstone), and the new period
    -- takes what its hash holds (the hash layout's before the switch, or one moved aside by a clock behind) before
    -- its name takes the tombstone: whatever a hash held is read into the string once, and booked there since.
    turned = true
    -- Once a minute at most, whatever the verdict (as the turned string): a record an earlier release (or its admin)
    -- wrote becomes a hash table.
    redis.call('HSETNX', KEYS[1], tableField, tableValue)
    curs = {(s1 or 0) + 0, (h1 or 0) + 0, (s2 or 0) + 0, (h2 or 0) + 0, (s3 or 0) + 0, (h3 or 0) + 0, (s4 or 0) + 0,
      (h4 or 0) + 0, (s5 or 0) + 0, (h5 or 0) + 0}
    requests = (n or 0) + 0
    local names = {'minute', 'hourly', 'daily', 'weekly', 'monthly'}
    local old = ids and {string.match(ids, '^(%S+) (%S+) (%S+) (%S+) (%S+)$')} or {}
    local new = {string.match(periodIds, '^(%S+) (%S+) (%S+) (%S+) (%S+)$')}
    -- Each period key's TTL: its window's length and periodGrace, as step 6 below.
    local year, month = string.match(ARGV[4], '^(%d%d%d%d)%-(%d%d)')
    year, month = year + 0, month + 0
    local days = 31
    if month == 2 then
      days = 28
      if year % 4 == 0 and (year % 100 ~= 0 or year % 400 == 0) then days = 29 end
    elseif month == 4 or month == 6 or month == 9 or month == 11 then
      days = 30
    end
    local lengths = {60, 3600, 86400, 7 * 86400, days * 86400}
    local prefix = string.sub(KEYS[1], 1, #KEYS[1] - 3)
    for i = 1, 5 do
      if old[i] ~= new[i] then
        local ttl = format('%d', lengths[i] + periodGrace)
        if old[i] then
          local aside = prefix .. 'w:' .. names[i] .. ':' .. old[i]
          redis.call('DEL', aside)
          if i == 1 then
            redis.call('HSET', aside, 'spent', format('%d', curs[1]), 'held', format('%d', curs[2]), 'requests',
              format('%d', requests))
          else
            redis.call('HSET', aside, 'spent', format('%d', curs[2 * i - 1]), 'held', format('%d', curs[2 * i]))
          end
          redis.call('EXPIRE', aside, ttl)
        end
        local key = prefix .. 'w:' .. names[i] .. ':' .. new[i]
        local got = redis.pcall('HMGET', key, 'spent', 'held', 'requests')
        -- (A tombstone here, not possible while the string names another period, reads as an empty period.)
        if got.err then got = {} end
        curs[2 * i - 1], curs[2 * i] = (got[1] or 0) + 0, (got[2] or 0) + 0
        if i == 1 then requests = (got[3] or 0) + 0 end
        redis.call('SET', key, 'cur', 'EX', ttl)
      end
    end
  end
elseif periodsPassed then
  periods, at = KEYS, 1
else
  local i1, i2, i3, i4, i5 = string.match(ARGV[5], '^(%S+) (%S+) (%S+) (%S+) (%S+)$')
  local prefix = string.sub(KEYS[1], 1, #KEYS[1] - 3)
  periods, at = {prefix .. 'w:minute:' .. i1, prefix .. 'w:hourly:' .. i2, prefix .. 'w:daily:' .. i3,
    prefix .. 'w:weekly:' .. i4, prefix .. 'w:monthly:' .. i5}, 0
end

-- 3c. The request rate: at most rpm admitted requests per UTC minute, counted in the minute period.
local rpm = not refusal and rec[9] and tonumber(rec[9])
if rpm then
  local count = requests
  if not isString then count = tonumber(redis.call('HGET', periods[at + 1], 'requests')) or 0 end
  if count >= rpm then refusal = {'rate_limited', rpm, count} end
end

-- 4. Every limited window must hold minMicros; the grant shrinks to the tightest one (room: what it
--    has left before this request). Reaching a limit exactly is allowed: limit - used may equal the grant.
local room = nil
for i = 1, 5 do
  local limit = not refusal and rec[2 + i] and tonumber(rec[2 + i])
  if limit then
    local held, used
    if spent then
      held = heldText + 0
      used = spent[i] + held
    elseif isString then
      held = curs[2 * i]
      used = curs[2 * i - 1] + held
    else
      local p = redis.call('HMGET', periods[at + i], 'spent', 'held')
      held = (p[2] or 0) + 0
      used = (p[1] or 0) + held
    end
    local left = limit - used
    if left < minMicros then refusal = {'budget_exceeded', i, limit, used, held} end
    if left < grant then grant = left end
    if not room or left < room then room = left end
  end
end

-- 5. The session: steps are checked first, then its budget.
if hasSession and not refusal then
  local steps = (s[3] or 0) + 0
  if sessionMaxSteps and steps >= sessionMaxSteps then
    refusal = {'session_steps_exceeded', sessionMaxSteps, steps}
  elseif sessionBudget then
    local held = (s[5] or 0) + 0
    local used = (s[4] or 0) + held
    if sessionBudget - used < minMicros then refusal = {'session_budget_exceeded', sessionBudget, used, held} end
    if sessionBudget - used < grant then grant = sessionBudget - used end
    if not room or sessionBudget - used < room then room = sessionBudget - used end
  end
end

-- A turned string is written whatever the verdict: its periods' names hold tombstones now.
local curFormat = '%d %d %d %d %d %d %d %d %d %d %d %s'
if turned and refusal then
  redis.call('SET', curName, format(curFormat, curs[1], curs[2], curs[3], curs[4], curs[5], curs[6], curs[7], curs[8],
    curs[9], curs[10], requests, periodIds), 'EX', curTtl)
end

-- 5a. Refused: unless the id was used, the session's lowered limits are written and its life is extended (EXPIRE
--     does nothing to a session that does not exist).
if refusal then
  if redis.call('EXISTS', recordName) == 1 then return {'duplicate'} end
  if hasSession then
    if limits then redis.call('HSET', sessionKey, unpack(limits)) end
    redis.call('EXPIRE', sessionKey, sessionTtl)
  end
  return refusal
end

-- 5b. Admitted: the reservation record, written before anything else, SET NX (a used id is told here, with nothing
--    written yet). What is held and where, for abandon (extend and settle are given the keys), one string written
--    with its TTL in one SET: 'held <amount> <provider> <created_at>' ('kept …' when the hold is booked in the string
--    layout), then the session and the loop step when there are: ' s:<id>', ' loop:<scope>#<sinceMs>#<step>' (named
--    after the key's tag). The five periods are those of created_at (the caller named ARGV[5] from that time). None
--    of the parts holds a space (a session id, a scope and a provider never do). Its TTL outlives every period key,
--    so a hold is never released by expiry. The grant as text: the maximum as it arrived, unless a limit shrank it.
--    (A previous release reads 'kept' as no hold: it never releases one there, nor charges it to a hash.)
local grantArg = ARGV[3]
if grant ~= maxMicros then grantArg = format('%d', grant) end
-- One concatenation each (every piece joined at once: each string made costs). KEYS[1] is '<tag>key', so what follows
-- the key's tag starts 2 characters before its end.
-- The window's first request of a step is not booked: its record itself tells whether it is in flight (7b).
local booksLoop = hasLoop and not loopNewSince
local word = 'held '
if isString then word = 'kept ' end
local record
if not (hasSession or booksLoop) then
  record = word .. grantArg .. ' ' .. ARGV[1] .. ' ' .. ARGV[4]
elseif not booksLoop then
  record = word .. grantArg .. ' ' .. ARGV[1] .. ' ' .. ARGV[4] .. ' ' .. string.sub(sessionKey, #KEYS[1] - 2)
elseif not hasSession then
  record = word .. grantArg .. ' ' .. ARGV[1] .. ' ' .. ARGV[4] .. ' ' .. string.sub(loopKey, #KEYS[1] - 2) .. '#'
    .. loopSinceText .. '#' .. step
else
  local tagEnd = #KEYS[1] - 2
  record = word .. grantArg .. ' ' .. ARGV[1] .. ' ' .. ARGV[4] .. ' ' .. string.sub(sessionKey, tagEnd) .. ' '
    .. string.sub(loopKey, tagEnd) .. '#' .. loopSinceText .. '#' .. step
end
if not redis.call('SET', recordName, record, 'EX', recordTtl, 'NX') then
  if turned then
    redis.call('SET', curName, format(curFormat, curs[1], curs[2], curs[3], curs[4], curs[5], curs[6], curs[7], curs[8],
      curs[9], curs[10], requests, periodIds), 'EX', curTtl)
  end
  return {'duplicate'}
end

-- 6. Admitted: hold the grant in every window period (limited or not, so status shows all spend),
--    and count the request in the minute. The string layout: one SET, its TTL renewed when a window turned (it
--    holds the month's period). The hash layout: every period starts on a minute boundary, so the minute's
--    first request is the first in every period it creates: it sets the five TTLs (and gives one back to
--    a key that lost it), and the minute's later requests need not. A period's TTL is its length and periodGrace
--    (src/budget/windows.ts), told here, not passed (an argument costs Redis time on every call): a month's length
--    from the year and month of ARGV[4], the time the periods are of.
if spent then
  -- Held nothing before (a request alone in flight): the grant's text.
  local held = grantArg
  if heldText ~= '0' then held = format('%d', heldText + grant) end
  redis.call('SET', curName, spent[1] .. ' ' .. held .. ' ' .. spent[2] .. ' ' .. held .. ' ' .. spent[3] .. ' ' .. held ..
    ' ' .. spent[4] .. ' ' .. held .. ' ' .. spent[5] .. ' ' .. held .. ' ' .. format('%d', requests + 1) .. ' ' ..
    periodIds, 'KEEPTTL')
elseif isString then
  local value = format(curFormat, curs[1], curs[2] + grant, curs[3], curs[4] + grant, curs[5], curs[6] + grant, curs[7],
    curs[8] + grant, curs[9], curs[10] + grant, requests + 1, periodIds)
  if turned then redis.call('SET', curName, value, 'EX', curTtl) else redis.call('SET', curName, value, 'KEEPTTL') end
else
  local firstOfMinute = redis.call('HINCRBY', periods[at + 1], 'requests', '1') == 1
  local ttls
  if firstOfMinute then
    -- Once a minute: a record an earlier release wrote (or its admin) becomes a hash table.
    redis.call('HSETNX', KEYS[1], tableField, tableValue)
    local year, month = string.match(ARGV[4], '^(%d%d%d%d)%-(%d%d)')
    year, month = year + 0, month + 0
    local days = 31
    if month == 2 then
      days = 28
      if year % 4 == 0 and (year % 100 ~= 0 or year % 400 == 0) then days = 29 end
    elseif month == 4 or month == 6 or month == 9 or month == 11 then
      days = 30
    end
    ttls = {format('%d', 60 + periodGrace), format('%d', 3600 + periodGrace), format('%d', 86400 + periodGrace),
      format('%d', 7 * 86400 + periodGrace), format('%d', days * 86400 + periodGrace)}
  end
  for i = 1, 5 do
    redis.call('HINCRBY', periods[at + i], 'held', grantArg)
    if ttls then redis.call('EXPIRE', periods[at + i], ttls[i]) end
  end
end

-- 7. The session counts one step and holds the grant, with the limits step 3 lowered, and lives on.
if hasSession then
  local held, steps = format('%d', (s[5] or 0) + grant), format('%d', (s[3] or 0) + 1)
  if limits then
    limits[#limits + 1] = 'held'
    limits[#limits + 1] = held
    limits[#limits + 1] = 'steps'
    limits[#limits + 1] = steps
    redis.call('HSET', sessionKey, unpack(limits))
  else
    redis.call('HSET', sessionKey, 'held', held, 'steps', steps)
  end
  redis.call('EXPIRE', sessionKey, sessionTtl)
end

-- 7b. The loop step counts one more repeat, unless more than inFlightTolerated requests of it are in flight (requests
--     fired at once are not repeats), and one more request in flight (its end is settle's).
--     In flight: the window's first request of a step (a new step, or a new window) writes its entry alone,
--     '1:<sinceMs>#<request id>', and is not booked: it is in flight while its reservation record is held, which
--     settle and abandon change exactly once (so it costs settle nothing, and most steps have one request). Each
--     later request adds itself to the field '<step>:<sinceMs>' and is booked, and settle decrements that field;
--     the first is looked up only when it decides the verdict (exactly inFlightTolerated others in that field). The
--     record is read by its name (prefix of recordName, the id from the entry): the same {tag}, so the same slot.
--     Size: a new step whose hash ends in 0 (one in 16, as checksScopeSize in src/loop/rule.ts) counts its
--     scope; one found past stepsKept steps is trimmed to stepsAfterTrim (expired ones go first, then the oldest), so
--     the trim's cost is spread over many new steps. A scope found past stepsKept once keeps its steps' sinceMs
--     in the sorted set loopAgeKey from then on ('#e' negated marks it), so each later trim reads only what it drops;
--     smaller scopes (most conversations) never pay for it.
--     Lifetime: a step matters for a window after its sinceMs, so the scope lives a window (and up to an
--     eighth more) after its newest sinceMs: '#e' holds when it expires, and only a step whose window ends
--     past that extends it, so most writes set no TTL.
local loopBookedSince = ''
if hasLoop then
  -- The window and an eighth (floor of an eighth without a call: (w - w % 8) / 8).
  local ttl = loopWindowMs + (loopWindowMs - loopWindowMs % 8) / 8
  -- Past the recorded expiry: a new sinceMs, or an entry whose window was since raised on the key.
  local extend = not loopExpires or loopExpires < loopSince + loopWindowMs
  local expires
  -- Written 65 characters long (zero-padded; negated once indexed), past hash-max-listpack-value (64 by default): a
  -- scope is a hash table from its first write, so reading and writing a step finds it by hash at any scope size,
  -- not by a scan of a listpack that grows with each step (HMGET and HSET of a 40-step scope ~7k instructions more than
  -- of a hash table's; it takes ~1.7x the memory). A scope the previous release wrote stays a listpack until its expiry
  -- is next extended.
  if extend then expires = format(loopAged and '-%064d' or '%065d', nowMs + ttl) end
  if loopNewSince then
    -- The first request: counted (nothing else is in flight in a new window). recordName is '<tag>r:<request id>',
    -- and KEYS[1] '<tag>key': the id starts at KEYS[1]'s length.
    loopCount = 1
    local value = '1:' .. loopSinceText .. '#' .. string.sub(recordName, #KEYS[1])
    if extend then redis.call('HSET', loopKey, step, value, '#e', expires)
    else redis.call('HSET', loopKey, step, value) end
  else
    local flight = step .. ':' .. loopSinceText
    -- In its own field (this layout or the previous one): add this request, whose value before it is the others in
    -- flight (this layout's first request aside).
    local flightKnown = loopInFlight ~= nil
    if not flightKnown then loopInFlight = redis.call('HINCRBY', loopKey, flight, '1') - 1 end
    if loopFirst and loopInFlight == inFlightTolerated then
      local first = redis.pcall('GET', string.sub(recordName, 1, #KEYS[1] - 1) .. loopFirst)
      -- Held: 'held …' or 'kept …' (h, k).
      local mark = type(first) == 'string' and string.byte(first, 1)
      if mark == 104 or mark == 107 then loopInFlight = loopInFlight + 1 end
    end
    local counted = loopInFlight <= inFlightTolerated
    if counted then loopCount = loopCount + 1 end
    local value = format('%d', loopCount) .. ':' .. loopSinceText
    if loopFirst then value = value .. '#' .. loopFirst end
    -- An older release's entry (its in flight in its value) moves to the previous release's layout: every request
    -- in flight in the field.
    local flightValue = flightKnown and format('%d', loopInFlight + 1)
    if extend then
      if flightKnown then redis.call('HSET', loopKey, step, value, flight, flightValue, '#e', expires)
      else redis.call('HSET', loopKey, step, value, '#e', expires) end
    elseif flightKnown then
      redis.call('HSET', loopKey, step, value, flight, flightValue)
    elseif counted then
      -- (Not counted, with its in flight in its own field: the entry is as it was, nothing to write.)
      redis.call('HSET', loopKey, step, value)
    end
    loopBookedSince = loopSinceText
  end
  -- A step seen again after its window: the old window's requests in flight end nothing in the new one.
  if loopStale then redis.call('HDEL', loopKey, step .. ':' .. loopStale) end
  -- The scope's steps by age, touched below only by an indexed scope or a size check (whose index, when it makes one,
  -- sets loopAged there): 'lp:{h}:loopt:<scope>' from 'lp:{h}:loop:<scope>' (KEYS[1] is 'lp:{h}:key').
  -- A new step whose hash ends in '0' counts its scope (read once: each Lua call costs Redis ~1k instructions).
  local checksSize = loopIsNew and string.byte(step, -1) == 48
  if loopAged or checksSize then
    loopAgeKey = string.sub(KEYS[1], 1, #KEYS[1] - 3) .. 'loopt' .. string.sub(loopKey, #KEYS[1] + 2)
  end
  if loopAged and loopNewSince then redis.call('ZADD', loopAgeKey, loopSinceText, step) end
  if checksSize then
    local size
    -- Unindexed, the scope holds '#e', each step's entry and the in flight fields of some (most have none): the fields
    -- but '#e' are at least its steps, and counted exactly below only when they pass stepsKept.
    if loopAged then size = redis.call('ZCARD', loopAgeKey) else size = redis.call('HLEN', loopKey) - 1 end
    if size > stepsKept and not loopAged then
      -- The steps themselves: the one full read of the scope, which indexes it when it is past the limit.
      local all = redis.call('HGETALL', loopKey)
      local index, oldMark = {}, false
      for i = 1, #all, 2 do
        local since = string.match(all[i + 1], '^%d+:(%d+)')
        if since and not string.find(all[i], '[#:]') then
          index[#index + 1] = since
          index[#index + 1] = all[i]
        elseif all[i] == '#z' then
          oldMark = true
        end
      end
      size = #index / 2
      if size > stepsKept then
        -- First time past the limit: index every step by its sinceMs. '#e' is written zero-padded to 65 characters,
        -- past hash-max-listpack-value (64 by default), so Redis keeps the scope as a hash table from then on: a
        -- listpack finds each of its about 256 steps by a linear scan (Redis keeps one of up to 512 fields).
        redis.call('ZADD', loopAgeKey, unpack(index))
        redis.call('HSET', loopKey, '#e', format('-%064d', nowMs + ttl))
        -- The previous release's mark of an index: the scope is in this layout now.
        if oldMark then redis.call('HDEL', loopKey, '#z') end
        loopAged, extend = true, true
      end
    end
    if size > stepsKept then
      -- Expired steps (sinceMs <= nowMs - window) are the oldest: the set's order (sinceMs, then step) is the trim's.
      local drop = redis.call('ZRANGEBYSCORE', loopAgeKey, '-inf', format('%d', nowMs - loopWindowMs), 'WITHSCORES')
      local over = size - #drop / 2 - stepsAfterTrim
      if over > 0 then drop = redis.call('ZRANGE', loopAgeKey, 0, #drop / 2 + over - 1, 'WITHSCORES') end
      if #drop > 0 then
        local fields = {}
        for i = 1, #drop, 2 do
          fields[#fields + 1] = drop[i]
          fields[#fields + 1] = drop[i] .. ':' .. drop[i + 1]
        end
        redis.call('HDEL', loopKey, unpack(fields))
        redis.call('ZREMRANGEBYRANK', loopAgeKey, 0, #drop / 2 - 1)
      end
    end
  end
  if extend then
    redis.call('PEXPIRE', loopKey, ttl)
    if loopAged then redis.call('PEXPIRE', loopAgeKey, ttl) end
  end
end

if grant == maxMicros and loopBookedSince == '' then
  if room then return room - grant end
  return -1
end
if room then return grantArg .. ' ' .. format('%d', room - grant) .. ' ' .. loopBookedSince end
return grantArg .. '  ' .. loopBookedSince
