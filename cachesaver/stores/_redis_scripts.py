"""The Lua scripts of the Redis store (`cachesaver.stores.redis`).

Each runs atomically on the server: that is what makes "first writer wins, the loser is
appended", reservations and leases safe across machines, and what lets one call read a
whole batch of samples.
"""

from __future__ import annotations

__all__ = ["IMPORT", "LEASE", "READ", "READ_ARGS", "READ_KEYS", "RESERVE", "UNLEASE", "WRITE"]

# KEYS: samples hashes. ARGV: for each, a count then that many indices. Returns the texts
# in that order, flat (nil where a sample is missing). One call reads a whole batch: the
# server does the per-key work, so the client packs one command instead of one per key.
# HMGET takes at most 256 fields a call (Lua's unpack has a stack limit).
READ = """
local out, o, a = {}, 0, 1
for _, name in ipairs(KEYS) do
  local count = tonumber(ARGV[a])
  a = a + 1
  local done = 0
  while done < count do
    local take = math.min(count - done, 256)
    local values = redis.call('HMGET', name, unpack(ARGV, a, a + take - 1))
    for j = 1, take do
      o = o + 1
      out[o] = values[j]
    end
    a = a + take
    done = done + take
  end
end
return out
"""

# A read call takes at most about this many keys and arguments (a count per key plus its
# indices): it bounds how long one call holds the server (about 1-5 ms).
READ_KEYS = 1000
READ_ARGS = 10_000

# KEYS: samples hash, content key, keys set. ARGV: key, content, then index/text pairs.
# Returns {flags, appended}: flags[j] is 1 when pair j was stored at its index, else the
# text already there (ours is then appended past the largest index).
WRITE = """
redis.call('SET', KEYS[2], ARGV[2], 'NX')
redis.call('SADD', KEYS[3], ARGV[1])
local flags, losers, top = {}, {}, -1
for i = 3, #ARGV, 2 do
  local index = tonumber(ARGV[i])
  if index > top then top = index end
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    flags[#flags + 1] = 1
  else
    flags[#flags + 1] = redis.call('HGET', KEYS[1], ARGV[i])
    losers[#losers + 1] = ARGV[i + 1]
  end
end
local appended = {}
if #losers > 0 then
  for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
    local index = tonumber(field)
    if index and index > top then top = index end
  end
  for _, text in ipairs(losers) do
    top = top + 1
    redis.call('HSET', KEYS[1], top, text)
    appended[#appended + 1] = top
  end
end
return {flags, appended}
"""

# KEYS: run hash, free zset. ARGV: field, n. Returned indices first (lowest), then new.
RESERVE = """
local n = tonumber(ARGV[2])
local out = {}
local popped = redis.call('ZPOPMIN', KEYS[2], n)
for i = 1, #popped, 2 do out[#out + 1] = tonumber(popped[i]) end
local fresh = n - #out
if fresh > 0 then
  local stop = redis.call('HINCRBY', KEYS[1], ARGV[1], fresh)
  for i = stop - fresh, stop - 1 do out[#out + 1] = i end
end
return out
"""

# KEYS: samples hash, then lease keys. ARGV: owner, ttl in ms, then the indices.
# Returns positions (0-based) now held. A sample already stored is never leased (its
# writer may have finished between our read and this call).
LEASE = """
local held = {}
for i = 2, #KEYS do
  if redis.call('HEXISTS', KEYS[1], ARGV[i + 1]) == 0 then
    local owner = redis.call('GET', KEYS[i])
    if (not owner) or owner == ARGV[1] then
      redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
      held[#held + 1] = i - 2
    end
  end
end
return held
"""

UNLEASE = """
for _, name in ipairs(KEYS) do
  if redis.call('GET', name) == ARGV[1] then redis.call('DEL', name) end
end
return 0
"""

# KEYS: for each record, its samples hash and content key, then the keys set.
# ARGV[1]: JSON [[key, content, [index, text, index, text, ...]], ...]. All or nothing.
IMPORT = """
local records = cjson.decode(ARGV[1])
for r, record in ipairs(records) do
  local have = redis.call('GET', KEYS[2 * r])
  if have and have ~= record[2] then
    return redis.error_reply('CONFLICT content of ' .. record[1])
  end
  local pairs_ = record[3]
  for j = 1, #pairs_, 2 do
    local stored = redis.call('HGET', KEYS[2 * r - 1], pairs_[j])
    if stored and stored ~= pairs_[j + 1] then
      return redis.error_reply('CONFLICT sample ' .. pairs_[j] .. ' of ' .. record[1])
    end
  end
end
local written = 0
for r, record in ipairs(records) do
  redis.call('SET', KEYS[2 * r], record[2], 'NX')
  redis.call('SADD', KEYS[#KEYS], record[1])
  local pairs_ = record[3]
  for j = 1, #pairs_, 2 do
    written = written + redis.call('HSETNX', KEYS[2 * r - 1], pairs_[j], pairs_[j + 1])
  end
end
return written
"""
