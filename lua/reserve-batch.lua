--[[
reserve-batch: admit several requests of one key in one call, each exactly as reserve.lua would admit it on its own,
in order, when the key is on the string layout and its current periods are the ones named (ARGV[1]): the request
has no session; a loop check, with the key's guard in force, is read, refused and recorded as reserve.lua's steps 3a
and 7b do (the same keys, the same writes); a loop check sent without its key and arguments (its caller last saw the
guard off) is admitted as no check while the guard is off. Any other item (such a check with the guard in force, a
refusal of any kind, a used request id, a key not on the string layout, periods turned since) is left untouched,
holding nothing, for reserve.lua, which answers it as it answers any request.

KEYS[1]     key record            lp:{h}:key (reserve.lua)
KEYS[2]     current periods       lp:{h}:cur (reserve.lua's string layout)
KEYS[3..]   the reservation records lp:{h}:r:<requestId>, one an item
KEYS[..]    then the loop state of each item flagged '1', in order: lp:{h}:loop:<scope> (reserve.lua's last key)
ARGV[1]     the five current period ids, minute to monthly, space separated (reserve.lua's ARGV[5])
ARGV[2]     current time, ISO 8601, of those periods (each admitted record's created_at)
ARGV[3]     one character an item: '1' when it asks a loop check, '2' when it asks one without its key and arguments,
            else '0'
ARGV[4..]   each item's provider id, minMicros, maxMicros, in KEYS' order
ARGV[..]    then each '1' item's step (16 hex chars) and its time, ms since the epoch (reserve.lua's last two)

Returns a list, one value an item: what reserve.lua would have answered admitting it (remainingMicros, an integer,
-1 when nothing is limited; or '<grantedMicros> <remainingMicros> <loopSinceMs>', either of the last two possibly
empty), or nil (untouched: reserve it with reserve.lua); then 1 when the key's loop guard is in force, else 0.
(A previous release's reserve-batch.lua, its own script, takes no loop keys and leaves every item with a guard in force.)
]]

local format = string.format
-- RESERVATION_TTL_SECONDS, as reserve.lua (test/unit/lua-ttl-constants.test.ts holds them equal).
local recordTtl = '3024000'
-- The loop rule's constants, as reserve.lua has them (test/unit/lua-loop-constants.test.ts holds them equal).
local defaultLoopLimit, defaultLoopWindow, stepsKept, stepsAfterTrim, inFlightTolerated = 10, 600, 256, 192, 1
local items = #ARGV[3]
local out = {}

-- 1. The key, read once: active, on the string layout, limited or marked unlimited; else every item is reserve.lua's.
local rec = redis.call('HMGET', KEYS[1], 'active', 'providers', 'lim:minute', 'lim:hourly', 'lim:daily', 'lim:weekly',
  'lim:monthly', 'unlimited', 'rpm', 'layout', 'loop_limit', 'loop_window')
-- The key's loop limit (no session lowers it here): 0 is the guard off, when a loop check reads and records nothing.
local loopLimit = 0
if rec[11] ~= '0' then loopLimit = rec[11] and tonumber(rec[11]) or defaultLoopLimit end
local guard = 0
if loopLimit ~= 0 then guard = 1 end
local v
if rec[1] == '1' and rec[10] == '1' and (rec[8] == '1' or rec[3] or rec[4] or rec[5] or rec[6] or rec[7]) then
  v = redis.call('GET', KEYS[2])
end
local s1, h1, s2, h2, s3, h3, s4, h4, s5, h5, requests, ids
if v then
  s1, h1, s2, h2, s3, h3, s4, h4, s5, h5, requests, ids =
    string.match(v, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (.*)$')
end
if ids ~= ARGV[1] then
  for i = 1, items do out[i] = false end
  out[items + 1] = guard
  return out
end
local spent = {s1 + 0, s2 + 0, s3 + 0, s4 + 0, s5 + 0}
local held = {h1 + 0, h2 + 0, h3 + 0, h4 + 0, h5 + 0}
requests = requests + 0
local limits = {rec[3] and tonumber(rec[3]), rec[4] and tonumber(rec[4]), rec[5] and tonumber(rec[5]),
  rec[6] and tonumber(rec[6]), rec[7] and tonumber(rec[7])}
local rpm = rec[9] and tonumber(rec[9])
local providers = ',' .. (rec[2] or '') .. ','
local loopWindowMs = (rec[12] and tonumber(rec[12]) or defaultLoopWindow) * 1000
-- KEYS[1] is 'lp:{h}:key': what follows the key's tag starts 2 characters before its end.
local tagEnd = #KEYS[1] - 2

-- reserve.lua's step 3a for one loop check: its step's entry read, as a table of reserve.lua's loop locals.
local function readLoop(loopKey, step, nowText)
  local nowMs = nowText + 0
  -- Every member named here (false for none): a member added later makes Lua grow the table's hash part and rehash it.
  local l = {key = loopKey, step = step, nowMs = nowMs, count = 0, since = nowMs, sinceText = nowText, inFlight = 0,
    newSince = true, isNew = false, expires = false, aged = false, first = false, stale = false}
  local got = redis.call('HMGET', loopKey, step, '#e')
  local entry = got[1]
  l.isNew, l.expires = not entry, got[2] and got[2] + 0
  if l.expires and l.expires < 0 then l.expires, l.aged = -l.expires, true end
  if entry then
    local c, since, rest = string.match(entry, '^(%d+):(%d+)(.*)$')
    local sinceMs = c and since + 0
    if c and nowMs < sinceMs + loopWindowMs then
      l.count, l.since, l.sinceText, l.newSince = c + 0, sinceMs, since, false
      local mark = string.byte(rest, 1)
      if mark == 35 then l.first, l.inFlight = string.sub(rest, 2), nil
      elseif mark == 58 then l.inFlight = tonumber(string.sub(rest, 2)) or 0
      else l.inFlight = nil end
    elseif c then
      l.stale = since
    end
  end
  return l
end

-- reserve.lua's step 7b for an admitted loop check, whose reservation record is recordName: returns loopBookedSince.
local function recordLoop(l, recordName)
  local loopKey, step, nowMs, loopCount, loopInFlight, loopFirst, loopAged = l.key, l.step, l.nowMs, l.count, l.inFlight,
    l.first, l.aged
  local loopBookedSince = ''
  local ttl = loopWindowMs + (loopWindowMs - loopWindowMs % 8) / 8
  local extend = not l.expires or l.expires < l.since + loopWindowMs
  local expires
  -- 65 characters, as reserve.lua writes it (a hash table from the scope's first write).
  if extend then expires = format(loopAged and '-%064d' or '%065d', nowMs + ttl) end
  if l.newSince then
    local value = '1:' .. l.sinceText .. '#' .. string.sub(recordName, #KEYS[1])
    if extend then redis.call('HSET', loopKey, step, value, '#e', expires)
    else redis.call('HSET', loopKey, step, value) end
  else
    local flight = step .. ':' .. l.sinceText
    local flightKnown = loopInFlight ~= nil
    if not flightKnown then loopInFlight = redis.call('HINCRBY', loopKey, flight, '1') - 1 end
    if loopFirst and loopInFlight == inFlightTolerated then
      local first = redis.pcall('GET', string.sub(recordName, 1, #KEYS[1] - 1) .. loopFirst)
      local mark = type(first) == 'string' and string.byte(first, 1)
      if mark == 104 or mark == 107 then loopInFlight = loopInFlight + 1 end
    end
    local counted = loopInFlight <= inFlightTolerated
    if counted then loopCount = loopCount + 1 end
    local value = format('%d', loopCount) .. ':' .. l.sinceText
    if loopFirst then value = value .. '#' .. loopFirst end
    local flightValue = flightKnown and format('%d', loopInFlight + 1)
    if extend then
      if flightKnown then redis.call('HSET', loopKey, step, value, flight, flightValue, '#e', expires)
      else redis.call('HSET', loopKey, step, value, '#e', expires) end
    elseif flightKnown then
      redis.call('HSET', loopKey, step, value, flight, flightValue)
    elseif counted then
      redis.call('HSET', loopKey, step, value)
    end
    loopBookedSince = l.sinceText
  end
  if l.stale then redis.call('HDEL', loopKey, step .. ':' .. l.stale) end
  local loopAgeKey
  local checksSize = l.isNew and string.byte(step, -1) == 48
  if loopAged or checksSize then
    loopAgeKey = string.sub(KEYS[1], 1, #KEYS[1] - 3) .. 'loopt' .. string.sub(loopKey, #KEYS[1] + 2)
  end
  if loopAged and l.newSince then redis.call('ZADD', loopAgeKey, l.sinceText, step) end
  if checksSize then
    local size
    if loopAged then size = redis.call('ZCARD', loopAgeKey) else size = redis.call('HLEN', loopKey) - 1 end
    if size > stepsKept and not loopAged then
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
        redis.call('ZADD', loopAgeKey, unpack(index))
        redis.call('HSET', loopKey, '#e', format('-%064d', nowMs + ttl))
        if oldMark then redis.call('HDEL', loopKey, '#z') end
        loopAged, extend = true, true
      end
    end
    if size > stepsKept then
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
  return loopBookedSince
end

-- 2. Each item in order, against what the items before it hold: admitted as reserve.lua steps 1 to 7b admit (its record
--    'kept <grant> <provider> <created_at>', and ' loop:<scope>#<sinceMs>#<step>' when its step is booked, SET NX with
--    its TTL; the grant held in all five periods, the request counted in the minute; its loop step recorded), or left
--    untouched.
local admitted = false
local loops, loopArgs = 0, 4 + 3 * items
for i = 1, items do
  local at = 3 * i + 1
  local provider = ARGV[at]
  local loop
  local flag = string.byte(ARGV[3], i)
  if flag == 49 then
    local loopKey = KEYS[2 + items + loops + 1]
    local step, nowText = ARGV[loopArgs + 2 * loops], ARGV[loopArgs + 2 * loops + 1]
    loops = loops + 1
    if loopLimit ~= 0 then loop = readLoop(loopKey, step, nowText) end
  end
  -- A check sent without its arguments while the guard is in force: reserve.lua's, never admitted unchecked.
  local ok = not (flag == 50 and loopLimit ~= 0) and
    (rec[2] == provider or string.find(providers, ',' .. provider .. ',', 1, true)) and
    not (loop and loop.count > loopLimit) and not (rpm and requests >= rpm)
  local minMicros, maxMicros = ARGV[at + 1] + 0, ARGV[at + 2] + 0
  local grant, room = maxMicros, nil
  if ok then
    for w = 1, 5 do
      local limit = limits[w]
      if limit then
        local left = limit - spent[w] - held[w]
        if left < minMicros then ok = false end
        if left < grant then grant = left end
        if not room or left < room then room = left end
      end
    end
  end
  local grantArg = ARGV[at + 2]
  if grant ~= maxMicros then grantArg = format('%d', grant) end
  local record = 'kept ' .. grantArg .. ' ' .. provider .. ' ' .. ARGV[2]
  -- The window's first request of a step is not booked: its record itself tells whether it is in flight (7b).
  if loop and not loop.newSince then
    record = record .. ' ' .. string.sub(loop.key, tagEnd) .. '#' .. loop.sinceText .. '#' .. loop.step
  end
  if ok and redis.call('SET', KEYS[i + 2], record, 'EX', recordTtl, 'NX') then
    for w = 1, 5 do held[w] = held[w] + grant end
    requests, admitted = requests + 1, true
    local booked = ''
    if loop then booked = recordLoop(loop, KEYS[i + 2]) end
    if grant == maxMicros and booked == '' then
      out[i] = room and room - grant or -1
    elseif room then
      out[i] = grantArg .. ' ' .. format('%d', room - grant) .. ' ' .. booked
    else
      out[i] = grantArg .. '  ' .. booked
    end
  else
    out[i] = false
  end
end

-- 3. The string, written once (its TTL kept: no period turned).
if admitted then
  redis.call('SET', KEYS[2], format('%d %d %d %d %d %d %d %d %d %d %d ', spent[1], held[1], spent[2], held[2], spent[3],
    held[3], spent[4], held[4], spent[5], held[5], requests) .. ids, 'KEEPTTL')
end
out[items + 1] = guard
return out
