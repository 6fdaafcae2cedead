--[[
settle-batch: settle several reservations of one key in one call, each exactly as settle.lua would and exactly once
per request id, when it was booked in the string layout's current periods (a 'kept' record, and lp:{h}:cur's period
ids are still the ones it was booked in). Any other item (a hold booked in the period hashes, a record settled before
or missing, an earlier release's hash record, periods turned since) is left untouched for settle.lua. Each item is
applied on its own: a batch that fails part-way leaves every item settled or untouched, and settle.lua settles the rest.

KEYS[1]     current periods       lp:{h}:cur (reserve.lua)
KEYS[2]     today's spend history lp:{h}:d:<YYYY-MM-DD> (a counter)
KEYS[3..]   the reservation records lp:{h}:r:<requestId>, one an item, none booked in a session or a loop step
ARGV[1]     the five booked period ids of every item, minute to monthly, space separated
ARGV[2..]   each item's actualMicros, in KEYS' order

Returns a list, one integer an item: what it was charged (settled now), or -1 (untouched: settle it with settle.lua)
]]

-- As settle.lua: SETTLED_RECORD_TTL_SECONDS and HISTORY_DAYS (test/unit/lua-ttl-constants.test.ts holds them equal).
local settledTtl, historyDays = '86400', 400
local items = #KEYS - 2
local out = {}

-- 1. The string: none, or periods other than the items' (turned since), leaves every item to settle.lua.
local v = redis.call('GET', KEYS[1])
local s1, h1, s2, h2, s3, h3, s4, h4, s5, h5, requests, ids
-- sameHeld: every window holds the same (nearly always, as reserve.lua's), matched by a back reference: 8 captures where
-- 12 cost more (each capture is a string made), and one held reckoned and formatted where five were.
local sameHeld = false
if v then
  s1, h1, s2, s3, s4, s5, requests, ids = string.match(v, '^(%d+) (%d+) (%d+) %2 (%d+) %2 (%d+) %2 (%d+) %2 (%d+) (.*)$')
  if ids == ARGV[1] then
    sameHeld = true
  else
    s1, h1, s2, h2, s3, h3, s4, h4, s5, h5, requests, ids =
      string.match(v, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (.*)$')
  end
end
if ids ~= ARGV[1] then
  for i = 1, items do out[i] = -1 end
  return out
end
h1 = h1 + 0
if not sameHeld then h2, h3, h4, h5 = h2 + 0, h3 + 0, h4 + 0, h5 + 0 end

-- 2. Each item held in the string: its record becomes 'settled <actual>' with a settled record's TTL, and each period
--    is charged its actual and releases its hold (never below zero), in order, as one settle.lua each would.
local total, settled = 0, false
for i = 1, items do
  local record = KEYS[i + 2]
  local got = redis.pcall('GET', record)
  local amount = type(got) == 'string' and string.match(got, '^kept (%d+) ')
  if amount then
    local actualText = ARGV[i + 1]
    local actual, reserved = actualText + 0, amount + 0
    redis.call('SET', record, 'settled ' .. actualText, 'EX', settledTtl)
    h1 = h1 - reserved
    if h1 < 0 then h1 = 0 end
    if not sameHeld then
      h2, h3, h4, h5 = h2 - reserved, h3 - reserved, h4 - reserved, h5 - reserved
      if h2 < 0 then h2 = 0 end
      if h3 < 0 then h3 = 0 end
      if h4 < 0 then h4 = 0 end
      if h5 < 0 then h5 = 0 end
    end
    total, settled = total + actual, true
    out[i] = actual
  else
    out[i] = -1
  end
end
if settled then
  -- A spent unchanged (nothing charged) is written back as read.
  if total > 0 then
    s1, s2, s3, s4, s5 = string.format('%d', s1 + total), string.format('%d', s2 + total), string.format('%d', s3 + total),
      string.format('%d', s4 + total), string.format('%d', s5 + total)
  end
  if sameHeld then
    local held = '0'
    if h1 > 0 then held = string.format('%d', h1) end
    redis.call('SET', KEYS[1], s1 .. ' ' .. held .. ' ' .. s2 .. ' ' .. held .. ' ' .. s3 .. ' ' .. held .. ' ' .. s4 .. ' ' ..
      held .. ' ' .. s5 .. ' ' .. held .. ' ' .. requests .. ' ' .. ids, 'KEEPTTL')
  else
    -- The texts joined, not formatted: Lua 5.1 formats a %s shorter than 100 characters through sprintf.
    redis.call('SET', KEYS[1], s1 .. ' ' .. string.format('%d', h1) .. ' ' .. s2 .. ' ' .. string.format('%d', h2) .. ' ' ..
      s3 .. ' ' .. string.format('%d', h3) .. ' ' .. s4 .. ' ' .. string.format('%d', h4) .. ' ' .. s5 .. ' ' ..
      string.format('%d', h5) .. ' ' .. requests .. ' ' .. ids, 'KEEPTTL')
  end
end

-- 3. Spend history, as settle.lua step 5: the items' charges in one INCRBY; the call that creates the counter sets its
--    expiry, historyDays days after the end of the day its name ends with.
if total > 0 and redis.call('INCRBY', KEYS[2], string.format('%d', total)) == total then
  local y, m, d = string.match(KEYS[2], '(%d%d%d%d)%-(%d%d)%-(%d%d)$')
  y, m, d = y + 0, m + 0, d + 0
  if m <= 2 then y = y - 1 end
  local era = (y - y % 400) / 400
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2 - (153 * mp + 2) % 5) / 5 + d - 1
  local doe = yoe * 365 + (yoe - yoe % 4) / 4 - (yoe - yoe % 100) / 100 + doy
  local day = era * 146097 + doe - 719468
  redis.call('EXPIREAT', KEYS[2], string.format('%d', (day + 1 + historyDays) * 86400))
end
return out
