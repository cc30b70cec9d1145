//! The Lua of the `idem` key family: a claim, an outcome, a lease's renewal, each one atomic
//! script over a tenant's entry, index and book (see the module above for the key layout).

use std::sync::LazyLock;

use crate::store::Script;

/// Lua shared by the scripts: the tenant's book and making room in it.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function total(book)
  return tonumber(redis.call('HGET', book, '#') or '0')
end
local function charge(book, id, bytes)
  local before = tonumber(redis.call('HGET', book, id) or '0')
  redis.call('HSET', book, id, bytes)
  redis.call('HINCRBY', book, '#', bytes - before)
end
local function uncharge(book, id)
  local before = tonumber(redis.call('HGET', book, id) or '0')
  redis.call('HDEL', book, id)
  redis.call('HINCRBY', book, '#', -before)
end
-- Forgets index members older than the TTL (their entries expired with it).
local function forget_expired(index, book, now, ttl)
  local old = redis.call('ZRANGEBYSCORE', index, '-inf', now - ttl)
  for _, m in ipairs(old) do uncharge(book, m) end
  if #old > 0 then redis.call('ZREMRANGEBYSCORE', index, '-inf', now - ttl) end
end
-- Drops the tenant's oldest entry that is not a live lease (and not `except`); returns false
-- when there is none, else true and the dropped entry's reference when it was unknown.
local function evict_one(index, book, prefix, now, scan, except)
  local members = redis.call('ZRANGE', index, 0, scan - 1)
  for _, m in ipairs(members) do
    if m ~= except then
      local key = prefix .. m
      local e = redis.call('HMGET', key, 's', 'x', 'r')
      local live = e[1] == 'L' and tonumber(e[2] or '0') > now
      if not live then
        redis.call('DEL', key)
        redis.call('ZREM', index, m)
        uncharge(book, m)
        if e[1] == 'C' then return true, false end
        return true, e[3] or ''
      end
    end
  end
  return false, false
end
"#;

/// KEYS: entry, index, book. ARGV: args hash, owner, reference, lease ms, ttl ms, id, entry
/// prefix, max entries, max bytes, small entry bytes, scan.
/// Returns {'conflict'} | {'replay', json} | {'wait', ms} | {'busy'} |
/// {'run', reference, takeover 0/1, what the earlier attempt sent (hex, or ''), dropped unknown
/// references...}.
const CLAIM: &str = r#"
local now = now_ms()
local lease, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local id, prefix = ARGV[6], ARGV[7]
local e = redis.call('HMGET', KEYS[1], 'a', 's', 'r', 'x', 'v', 'o', 'p', 'd')
local takeover, reference = '0', ARGV[3]
if e[1] then
  if e[1] ~= ARGV[1] then return {'conflict'} end
  if e[2] == 'C' then return {'replay', e[5] or ''} end
  -- This very claim, sent again after a dropped connection: it already holds the key.
  if e[2] == 'L' and e[6] == ARGV[2] then
    local p = e[7] or '0'
    return {'run', e[3], p, (p == '1' and e[8]) or ''}
  end
  if e[2] == 'L' and tonumber(e[4] or '0') > now then
    return {'wait', tostring(tonumber(e[4]) - now)}
  end
  -- Unknown, or a lease whose holder is gone: taken over, looking the link up first.
  takeover, reference = '1', e[3]
end
-- What an earlier attempt that ended unknown sent (a digest of its confirmed preview): kept
-- with the entry while it is taken over, so a repeat can send the same write again.
local sent = (takeover == '1' and e[8]) or ''
forget_expired(KEYS[2], KEYS[3], now, ttl)
local dropped = {}
if takeover == '0' then
  local small = tonumber(ARGV[10])
  while redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[8])
      or total(KEYS[3]) + small > tonumber(ARGV[9]) do
    local ok, unknown = evict_one(KEYS[2], KEYS[3], prefix, now, tonumber(ARGV[11]), id)
    if not ok then return {'busy'} end
    if unknown then table.insert(dropped, unknown) end
  end
end
redis.call('HSET', KEYS[1], 'a', ARGV[1], 's', 'L', 'r', reference, 'o', ARGV[2],
  'x', string.format('%.0f', now + lease), 'p', takeover)
redis.call('HDEL', KEYS[1], 'v')
if takeover == '0' then redis.call('HDEL', KEYS[1], 'd') end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], now, id)
charge(KEYS[3], id, tonumber(ARGV[10]))
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
local out = {'run', reference, takeover, sent}
for _, r in ipairs(dropped) do table.insert(out, r) end
return out
"#;

/// KEYS: entry, index, book. ARGV: owner, state C/U/F, the created JSON (C) or what was sent
/// (U: a digest in hex, or ''), id, its bytes, max bytes, small entry bytes, entry prefix, scan.
/// Returns 'lost' (the key is another claim's now), 'gone' (no entry), or the state recorded
/// (C, U, F), then the references of unknown outcomes dropped to make room. The owner stays on
/// a finished entry, so that the same call sent twice records once.
const FINISH: &str = r#"
local held = redis.call('HMGET', KEYS[1], 'o', 's')
if not held[1] then return {'gone'} end
if held[1] ~= ARGV[1] then return {'lost'} end
-- Recorded already (this very call, sent again after a dropped connection).
if held[2] ~= 'L' then return {held[2]} end
local id = ARGV[4]
if ARGV[2] == 'F' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], id)
  uncharge(KEYS[3], id)
  return {'F'}
end
local state, bytes, small = ARGV[2], tonumber(ARGV[5]), tonumber(ARGV[7])
local dropped = {}
if state == 'C' then
  local now = now_ms()
  local mine = tonumber(redis.call('HGET', KEYS[3], id) or '0')
  while total(KEYS[3]) - mine + bytes > tonumber(ARGV[6]) do
    local ok, unknown = evict_one(KEYS[2], KEYS[3], ARGV[8], now, tonumber(ARGV[9]), id)
    if not ok then break end
    if unknown then table.insert(dropped, unknown) end
  end
  if total(KEYS[3]) - mine + bytes > tonumber(ARGV[6]) then state, bytes = 'U', small end
end
if state == 'C' then
  redis.call('HSET', KEYS[1], 's', 'C', 'v', ARGV[3])
  redis.call('HDEL', KEYS[1], 'd')
else
  redis.call('HSET', KEYS[1], 's', 'U')
  redis.call('HDEL', KEYS[1], 'v')
  if ARGV[2] == 'U' and ARGV[3] ~= '' then
    redis.call('HSET', KEYS[1], 'd', ARGV[3])
  else
    redis.call('HDEL', KEYS[1], 'd')
  end
end
redis.call('HDEL', KEYS[1], 'x', 'p')
charge(KEYS[3], id, bytes)
local out = {state}
for _, r in ipairs(dropped) do table.insert(out, r) end
return out
"#;

/// KEYS: entry. ARGV: owner, lease ms. 1 when the lease was this holder's and is extended.
const RENEW: &str = r#"
local e = redis.call('HMGET', KEYS[1], 'o', 's')
if e[1] ~= ARGV[1] or e[2] ~= 'L' then return 0 end
redis.call('HSET', KEYS[1], 'x', string.format('%.0f', now_ms() + tonumber(ARGV[2])))
return 1
"#;

pub(super) static CLAIM_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new("idempotency_claim", &format!("{PRELUDE}{CLAIM}")));
pub(super) static FINISH_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new("idempotency_finish", &format!("{PRELUDE}{FINISH}")));
pub(super) static RENEW_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new("idempotency_renew", &format!("{PRELUDE}{RENEW}")));
