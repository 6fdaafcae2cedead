--[[
layout: reads the store's layout marker, once a minute of a proxy's clock and without waiting for it. Sent as a script,
as every other call on the request path is, so that the proxy's Redis commands on that path are of one class.

KEYS[1]     the marker    lp:layout ('1': every key's current periods are in the string layout)

Returns the marker, or nil when it is not set
]]
return redis.call('GET', KEYS[1])
