"""The Lua scripts of the Redis store: each operation is one atomic script, one round trip.

Time comes from the Redis server (`TIME`), so gateways on machines with skewed clocks share one
clock. The hot-path scripts take their numbers as one JSON array (`A`) and answer one string of
space-separated integers: fewer RESP items to encode and parse than one per value (measured).
Semantics are exactly those of `store.MemoryStore` (see `store.py`).
"""

from __future__ import annotations

_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local P = 60000
"""

_INTS = """
local function ints(t)
  for i = 1, #t do t[i] = string.format('%d', t[i]) end
  return table.concat(t, ' ')
end
"""

# Cost reservations of a spend counter `s` (budgets): the hash `s..':h'` maps each lease to its
# nano-USD and keeps their total in field '_sum'; the sorted set `s..':z'` holds each lease's
# expiry (ms). Expired leases (a worker died mid-request) are dropped before the total is read.
_HELD = """
local function held(s, now)
  local h, z = s .. ':h', s .. ':z'
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, 500)
  if #gone > 0 then
    local amounts = redis.call('HMGET', h, unpack(gone))
    local total = 0
    for i = 1, #gone do total = total + (tonumber(amounts[i]) or 0) end
    redis.call('HDEL', h, unpack(gone))
    redis.call('ZREM', z, unpack(gone))
    if redis.call('HINCRBY', h, '_sum', -total) <= 0 then redis.call('DEL', h, z) end
  end
  return tonumber(redis.call('HGET', h, '_sum') or '0')
end
"""

# KEYS: rate buckets, slot sets, spend counters, [meter base], credits hashes
# A: nr, ns, nb, nm, lease, lease_ms, (limit, cost) * nr, limit * ns, (limit_nano, reserve_nano) * nb,
#    [nc, budget index * nc]   (prepaid: that budget's limit is its overdraft + the hash's total)
# -> "1 remaining... reset_ms... spend... credits..." or
#    "0 kind(1 rate, 2 slot, 3 budget) index retry_ms spend held [credits]"
ACQUIRE = (
    _PRELUDE
    + _INTS
    + _HELD
    + """
local A = cjson.decode(ARGV[1])
local nr, ns, nb, nm = A[1], A[2], A[3], A[4]
local lease, lease_ms = A[5], A[6]
local a = 7
local tats, spend = {}, {}
local ca = 7 + 2 * nr + ns + 2 * nb
local nc = A[ca] or 0
local extra, credits = {}, {}
for c = 1, nc do
  local total = tonumber(redis.call('HGET', KEYS[nr + ns + nb + nm + c], 'total') or '0')
  extra[A[ca + c] + 1] = total
  credits[c] = total
end
for i = 1, nr do
  local limit, cost = A[a], A[a + 1]
  a = a + 2
  local interval = P / limit
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local need = tat + math.min(cost, limit) * interval - now
  if need > P + 0.001 then return ints({0, 1, i - 1, math.ceil(need - P)}) end
  tats[i] = tat + cost * interval
end
for j = 1, ns do
  local k, limit = KEYS[nr + j], A[a]
  a = a + 1
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
  if redis.call('ZCARD', k) >= limit then return ints({0, 2, j - 1, 1000}) end
end
local ba = a
for b = 1, nb do
  local limit, reserve = A[a], A[a + 1]
  a = a + 2
  local value = tonumber(redis.call('GET', KEYS[nr + ns + b]) or '0')
  if limit >= 0 then
    if extra[b] then limit = limit + extra[b] end  -- may go below zero: a debited key is refused
    local h = held(KEYS[nr + ns + b], now)
    if value >= limit or (h > 0 and value + h + reserve > limit) then
      if extra[b] then return ints({0, 3, b - 1, 0, value, h, extra[b]}) end
      return ints({0, 3, b - 1, 0, value, h})
    end
  end
  spend[b] = value
end
local out = {1}
for i = 1, nr do
  local interval = P / A[5 + 2 * i]
  local ahead = tats[i] - now
  redis.call('SET', KEYS[i], string.format('%.3f', tats[i]), 'PX', math.ceil(ahead) + 1000)
  out[1 + i] = math.max(0, math.floor((P - ahead + 0.001) / interval))
  out[1 + nr + i] = math.ceil(ahead)
end
for j = 1, ns do
  redis.call('ZADD', KEYS[nr + j], now + lease_ms, lease)
  redis.call('PEXPIRE', KEYS[nr + j], lease_ms + 1000)
end
for b = 1, nb do
  local limit, reserve = A[ba + 2 * b - 2], A[ba + 2 * b - 1]
  if limit >= 0 and reserve > 0 then
    local s = KEYS[nr + ns + b]
    redis.call('HSET', s .. ':h', lease, reserve)
    redis.call('HINCRBY', s .. ':h', '_sum', reserve)
    redis.call('ZADD', s .. ':z', now + lease_ms, lease)
    redis.call('PEXPIRE', s .. ':h', lease_ms + 1000)
    redis.call('PEXPIRE', s .. ':z', lease_ms + 1000)
  end
  out[1 + 2 * nr + b] = spend[b]
end
for c = 1, nc do out[1 + 2 * nr + nb + c] = credits[c] end
if nm > 0 then
  local name = KEYS[nr + ns + nb + 1] .. ':r:' .. math.floor(now / P)
  redis.call('INCR', name)
  redis.call('EXPIRE', name, 150)
end
return ints(out)
"""
)

# KEYS: tpm buckets, slot sets, spend counters, reserved spend counters, [meter base]
# A: nt, ns, nb, nm, lease, meter_tokens, nv, (limit, delta) * nt, (nano, expire_at) * nb
RELEASE = (
    _PRELUDE
    + """
local A = cjson.decode(ARGV[1])
local nt, ns, nb, nm = A[1], A[2], A[3], A[4]
local lease, tokens, nv = A[5], A[6], A[7]
local a = 8
for i = 1, nt do
  local limit, delta = A[a], A[a + 1]
  a = a + 2
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  tat = tat + delta * (P / limit)
  if tat <= now then
    redis.call('DEL', KEYS[i])
  else
    redis.call('SET', KEYS[i], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
  end
end
for j = 1, ns do redis.call('ZREM', KEYS[nt + j], lease) end
for b = 1, nb do
  local k, nano, at = KEYS[nt + ns + b], A[a], A[a + 1]
  a = a + 2
  redis.call('INCRBY', k, nano)
  if at > 0 then redis.call('EXPIREAT', k, at) end
end
for v = 1, nv do
  local h = KEYS[nt + ns + nb + v] .. ':h'
  local amount = redis.call('HGET', h, lease)
  if amount then  -- absent: already expired and dropped
    redis.call('HDEL', h, lease)
    redis.call('ZREM', KEYS[nt + ns + nb + v] .. ':z', lease)
    if redis.call('HINCRBY', h, '_sum', -tonumber(amount)) <= 0 then
      redis.call('DEL', h, KEYS[nt + ns + nb + v] .. ':z')
    end
  end
end
if nm > 0 and tokens ~= 0 then
  local name = KEYS[nt + ns + nb + nv + 1] .. ':t:' .. math.floor(now / P)
  redis.call('INCRBY', name, tokens)
  redis.call('EXPIRE', name, 150)
end
return 1
"""
)

# KEYS: spend counters, [meter base]   ARGV: nb, nm
# -> {spend..., rpm, tpm}   (sliding-window estimate over the current and previous minute)
READ = (
    _PRELUDE
    + """
local nb, nm = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for b = 1, nb do out[b] = tonumber(redis.call('GET', KEYS[b]) or '0') end
local rpm, tpm = 0, 0
if nm > 0 then
  local base, minute = KEYS[nb + 1], math.floor(now / P)
  local w = 1 - (now % P) / P
  local function est(kind)
    local cur = tonumber(redis.call('GET', base .. kind .. minute) or '0')
    local prev = tonumber(redis.call('GET', base .. kind .. (minute - 1)) or '0')
    return math.max(0, math.floor(cur + prev * w))
  end
  rpm, tpm = est(':r:'), est(':t:')
end
out[nb + 1] = rpm
out[nb + 2] = tpm
return out
"""
)

# KEYS: a prepaid key's credits hash   ARGV: nano, seq (the ledger entry the total counts up to)
SET_CREDITS = """
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '-1')
if tonumber(ARGV[2]) > seq then
  redis.call('HSET', KEYS[1], 'total', ARGV[1], 'seq', ARGV[2])
  return 1
end
return 0
"""

# KEYS: a spend counter   ARGV: nano, expire_at (0: never)
SEED = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') and tonumber(ARGV[2]) > 0 then
  redis.call('EXPIREAT', KEYS[1], tonumber(ARGV[2]))
end
return 1
"""
