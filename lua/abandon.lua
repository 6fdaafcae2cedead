--[[
abandon: first half of releasing a reservation whose reserve call timed out (it may or may not have
run). Touches only the reservation record; the caller settles a held one at 0 with settle.lua,
because only then are the booked keys known and declared in KEYS (Redis Cluster rule).

KEYS[1]     reservation record    lp:{h}:r:<requestId>

ARGV[1]     TTL seconds of the tombstone (a day, as a settled record's)

Returns one of
  {'tombstoned'}                                 no record: a settled tombstone now blocks the id
  {'settled'}                                    already settled: nothing to do
  {'held', amountMicros, booked, createdAt}      live: createdAt names the periods; booked the session and the
                                                 loop step after the key's tag ('s:<id> loop:<scope>#<sinceMs>#<step>',
                                                 '' for neither), from the record's booked and loop fields (a record
                                                 of the previous release has both in booked; one of an earlier
                                                 release lists every booked key in full in booked)
]]

-- 1. No record: the reserve never ran (or is still queued): block the id so it cannot hold later.
local res = redis.call('HMGET', KEYS[1], 'state', 'amount', 'booked', 'created_at', 'loop')
if not res[1] then
  redis.call('HSET', KEYS[1], 'state', 'settled', 'charged', '0')
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  return {'tombstoned'}
end

-- 2. Settled or held: report it as it is.
if res[1] ~= 'held' then return {'settled'} end
local booked = res[3] or ''
if res[5] then
  if booked ~= '' then booked = booked .. ' ' end
  booked = booked .. 'loop:' .. res[5]
end
return {'held', tonumber(res[2]) or 0, booked, res[4] or ''}
