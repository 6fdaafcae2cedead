--[[
abandon: first half of releasing a reservation whose reserve call timed out (it may or may not have
run). Touches only the reservation record; the caller settles a held one at 0 with settle.lua,
because only then are the booked keys known and declared in KEYS (Redis Cluster rule).

KEYS[1]     reservation record    lp:{h}:r:<requestId> (a string; a hash of an earlier release is read too)

ARGV[1]     TTL seconds of the tombstone (a day, as a settled record's)

Returns one of
  {'tombstoned'}                                 no record: a settled tombstone now blocks the id
  {'settled'}                                    already settled: nothing to do
  {'held', amountMicros, booked, createdAt}      live (held in the period hashes or, 'kept', the string layout's
                                                 lp:{h}:cur: settle tells which from the record): createdAt names the
                                                 periods; booked the session and the
                                                 loop step after the key's tag ('s:<id> loop:<scope>#<sinceMs>#<step>',
                                                 '' for neither), as the record lists them (a hash record of the
                                                 previous release has them in its booked and loop fields, one of the
                                                 release before both in booked; one of an earlier release lists every
                                                 booked key in full in booked)
]]

-- 1. No record: the reserve never ran (or is still queued): block the id so it cannot hold later.
local got = redis.pcall('GET', KEYS[1])
if not got then
  redis.call('SET', KEYS[1], 'settled 0', 'EX', ARGV[1])
  return {'tombstoned'}
end

-- 2. Settled or held: report it as it is. The record is a string, 'held <amount> <provider> <created_at>' ('kept …'
--    in the string layout) then its session and loop step as booked lists them (reserve.lua), or 'settled <charged>';
--    a hash of an earlier release fails GET and is read as one.
if type(got) == 'string' then
  local state, amount, createdAt, booked = string.match(got, '^(%l+) (%d+) %S+ (%S+) ?(.*)$')
  if state ~= 'held' and state ~= 'kept' then return {'settled'} end
  return {'held', tonumber(amount), booked, createdAt}
end
local res = redis.call('HMGET', KEYS[1], 'state', 'amount', 'booked', 'created_at', 'loop')
if res[1] ~= 'held' then return {'settled'} end
local booked = res[3] or ''
if res[5] then
  if booked ~= '' then booked = booked .. ' ' end
  booked = booked .. 'loop:' .. res[5]
end
return {'held', tonumber(res[2]) or 0, booked, res[4] or ''}
