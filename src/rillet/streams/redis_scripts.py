"""The Lua scripts of the Redis stream backend: each is one atomic step across several keys.

Appending checks the lease fence, the seq and the end of the log in the same step as the `XADD`;
session activity hands the session over to the next queued run in one step; lease take-over lets
exactly one node win an expired lease. Time comes from Redis (`TIME`), so clocks of the nodes
never matter. Keys other than `KEYS` are built from the prefix in `ARGV`, so these scripts assume
one Redis (not Redis Cluster).
"""

from __future__ import annotations

APPEND = """
-- Appends to one or more run logs, in order. ARGV: prefix, maxlen, ttl_s, then one argument per
-- append, '<run_id> <seq> <fence or -> <final 1/0> <payload>' (one argument, not five, because
-- packing arguments is what a group costs its sender most). Returns the refused appends only,
-- as pairs: the append's index (1-based) and why.
local refused = {}
for i = 4, #ARGV do
  local run_id, seq_arg, given, final, payload =
    string.match(ARGV[i], '^(%S+) (%d+) (%S+) ([01]) (.*)$')
  local meta, log = ARGV[1] .. 'run:' .. run_id .. ':meta', ARGV[1] .. 'run:' .. run_id .. ':log'
  local seq = tonumber(seq_arg)
  local reply = nil
  local state = redis.call('HMGET', meta, 'last', 'done', 'fence')
  local last, fence = tonumber(state[1] or '0'), state[3]
  if given == '-' and fence then
    reply = 'FENCED the run is leased'
  elseif given ~= '-' and not fence then
    reply = 'GONE the lease and log of the run are gone (Redis lost its data)'
  elseif given ~= '-' and fence ~= given then
    reply = 'FENCED the run is leased with another fence'
  elseif seq == last and last > 0 then
    -- A retried append whose first try got through is accepted once more, unchanged.
    local entry = redis.call('XRANGE', log, seq_arg .. '-0', seq_arg .. '-0')
    if not (entry[1] and entry[1][2][2] == payload) then
      reply = 'SEQ seq ' .. seq_arg .. ' does not follow ' .. last
    end
  elseif state[2] == '1' then
    reply = 'FINISHED the run has already finished'
  elseif seq ~= last + 1 then
    reply = 'SEQ seq ' .. seq_arg .. ' does not follow ' .. last
  else
    redis.call('XADD', log, 'MAXLEN', '~', ARGV[2], seq_arg .. '-0', 'e', payload)
    if final == '1' then
      redis.call('HSET', meta, 'last', seq, 'done', '1')
    else
      redis.call('HSET', meta, 'last', seq)
    end
    if last == 0 then
      redis.call('EXPIRE', meta, ARGV[3])
      redis.call('EXPIRE', log, ARGV[3])
    end
  end
  if reply then
    table.insert(refused, i - 3)
    table.insert(refused, reply)
  end
end
return refused
"""

CLAIM = """
-- KEYS: active. ARGV: run_id. Returns '' on success, else the active run id.
local active = redis.call('GET', KEYS[1])
if active and active ~= ARGV[1] then return active end
redis.call('SET', KEYS[1], ARGV[1])
return ''
"""

CLAIM_OR_ENQUEUE = """
-- KEYS: active, queue. ARGV: run_id, item (JSON). Returns 1 = claimed, 0 = queued.
local active = redis.call('GET', KEYS[1])
if active and active ~= ARGV[1] then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

RELEASE = """
-- KEYS: active, queue. ARGV: run_id. Returns the next item (now active) or false.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local item = redis.call('LPOP', KEYS[2])
if item then
  redis.call('SET', KEYS[1], cjson.decode(item)['run_id'])
  return item
end
redis.call('DEL', KEYS[1])
return false
"""

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

ACQUIRE_LEASE = (
    """
-- KEYS: meta, lease, leases (zset). ARGV: run_id, ttl_ms, keep_s. Returns the new fence.
"""
    + _NOW
    + """
local fence = redis.call('HINCRBY', KEYS[1], 'fence', 1)
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
redis.call('SET', KEYS[2], fence, 'PX', ARGV[2])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[1])
return fence
"""
)

RENEW_LEASES = (
    """
-- KEYS: leases (zset). ARGV: prefix, ttl_ms, then run_id, fence pairs. Returns the lost run ids.
"""
    + _NOW
    + """
local ttl = tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV, 2 do
  local run_id, fence = ARGV[i], ARGV[i + 1]
  local current = redis.call('HGET', ARGV[1] .. 'run:' .. run_id .. ':meta', 'fence')
  if current == fence then
    redis.call('SET', ARGV[1] .. 'run:' .. run_id .. ':lease', fence, 'PX', ttl)
    redis.call('ZADD', KEYS[1], now + ttl, run_id)
  elseif current then
    table.insert(lost, run_id)
  end
  -- No fence at all: Redis lost its data; the run's next append fails and ends it.
end
return lost
"""
)

RELEASE_LEASE = """
-- KEYS: meta, lease, leases (zset). ARGV: run_id, fence.
if redis.call('HGET', KEYS[1], 'fence') == ARGV[2] then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
return 1
"""

TAKE_EXPIRED = (
    """
-- KEYS: leases (zset). ARGV: prefix, ttl_ms, limit, keep_s. Returns run_id, fence pairs won.
"""
    + _NOW
    + """
local ttl = tonumber(ARGV[2])
local won = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, run_id in ipairs(due) do
  local base = ARGV[1] .. 'run:' .. run_id
  local left = redis.call('PTTL', base .. ':lease')
  if left > 0 then
    redis.call('ZADD', KEYS[1], now + left, run_id)
  else
    local meta = base .. ':meta'
    local fence = redis.call('HINCRBY', meta, 'fence', 1)
    if redis.call('TTL', meta) < 0 then redis.call('EXPIRE', meta, ARGV[4]) end
    redis.call('SET', base .. ':lease', fence, 'PX', ttl)
    redis.call('ZADD', KEYS[1], now + ttl, run_id)
    table.insert(won, run_id)
    table.insert(won, fence)
  end
end
return won
"""
)
