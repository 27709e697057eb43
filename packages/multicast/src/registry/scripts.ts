// Lua scripts of the Redis registry. Each runs atomically on the server and judges expiry by the server's
// clock (TIME), so clients with skewed clocks agree on who holds a lease. Leases are stored as
// "holder|ballot|expiresAt" strings (decimal digits: ballots go up to 2^53, beyond cjson's precision);
// events are published from inside the script, so a change and its notification cannot be separated.

const PRELUDE = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function fmt(n) return string.format('%.0f', n) end
local function parse_lease(v)
  if not v then return nil end
  local h, b, e = string.match(v, '^(%d+)|(%d+)|(%d+)$')
  if not h then return nil end
  return h, b, tonumber(e)
end
`;

export interface ScriptDef {
  keys: number;
  lua: string;
}

/** KEYS: meta nodes rings groups. ARGV: digest channel event nNodes nRings nGroups, then field/value pairs. */
const load: ScriptDef = {
  keys: 4,
  lua: `${PRELUDE}
if redis.call('HGET', KEYS[1], 'digest') == ARGV[1] then return 0 end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
local i = 7
for k = 2, 4 do
  local n = tonumber(ARGV[k + 2])
  for j = 1, n do
    redis.call('HSET', KEYS[k], ARGV[i], ARGV[i + 1])
    i = i + 2
  end
end
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'loadedAt', fmt(now_ms()))
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`,
};

/** KEYS: meta nodes rings groups live addrs leases subs subRings. One consistent snapshot. */
const view: ScriptDef = {
  keys: 9,
  lua: `${PRELUDE}
local now = now_ms()
local live = redis.call('ZRANGEBYSCORE', KEYS[5], '(' .. fmt(now), '+inf', 'WITHSCORES')
local addrs = {}
for i = 1, #live, 2 do addrs[#addrs + 1] = redis.call('HGET', KEYS[6], live[i]) or '' end
local subs = redis.call('ZRANGEBYSCORE', KEYS[8], '(' .. fmt(now), '+inf', 'WITHSCORES')
local subRings = {}
for i = 1, #subs, 2 do subRings[#subRings + 1] = redis.call('HGET', KEYS[9], subs[i]) or '[]' end
return {
  fmt(now),
  redis.call('HGET', KEYS[1], 'digest') or '',
  redis.call('HGETALL', KEYS[2]),
  redis.call('HGETALL', KEYS[3]),
  redis.call('HGETALL', KEYS[4]),
  live, addrs,
  redis.call('HGETALL', KEYS[7]),
  subs, subRings,
}
`,
};

/**
 * Register a live member with a time to live: a node (KEYS: live addrs; ARGV: node addrJson ttl channel
 * event) or a learner's subscription (KEYS: subs subRings; ARGV: learner ringsJson ttl channel event).
 * Publishes the event when the member is new, had expired, or changed. Returns the expiry.
 */
const register: ScriptDef = {
  keys: 2,
  lua: `${PRELUDE}
local now = now_ms()
local was = redis.call('ZSCORE', KEYS[1], ARGV[1])
local old = redis.call('HGET', KEYS[2], ARGV[1])
local exp = fmt(now + tonumber(ARGV[3]))
redis.call('ZADD', KEYS[1], exp, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if (not was) or tonumber(was) <= now or old ~= ARGV[2] then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return exp
`,
};

/**
 * KEYS: leases. ARGV: ring holder ballot ttl channel. An unexpired lease is only refreshed by its holder,
 * with a ballot not below the lease's; otherwise whoever asks gets it. Returns {1|0, current value}.
 */
const acquire: ScriptDef = {
  keys: 1,
  lua: `${PRELUDE}
local now = now_ms()
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local h, b, e = parse_lease(cur)
local same = false
if h and e > now then
  if h ~= ARGV[2] or tonumber(ARGV[3]) < tonumber(b) then return {0, cur} end
  same = (b == ARGV[3])
end
local v = ARGV[2] .. '|' .. ARGV[3] .. '|' .. fmt(now + tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], ARGV[1], v)
if not same then
  redis.call('PUBLISH', ARGV[5], '{"kind":"lease-changed","ring":' .. ARGV[1] .. ',"holder":' .. ARGV[2] ..
    ',"ballot":' .. ARGV[3] .. ',"reason":"acquired"}')
end
return {1, v}
`,
};

/** KEYS: leases. ARGV: ring holder ttl. Only the holder of an unexpired lease extends it. */
const renew: ScriptDef = {
  keys: 1,
  lua: `${PRELUDE}
local now = now_ms()
local h, b, e = parse_lease(redis.call('HGET', KEYS[1], ARGV[1]))
if (not h) or h ~= ARGV[2] or e <= now then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], h .. '|' .. b .. '|' .. fmt(now + tonumber(ARGV[3])))
return 1
`,
};

/** KEYS: leases. ARGV: ring holder channel. */
const release: ScriptDef = {
  keys: 1,
  lua: `${PRELUDE}
local now = now_ms()
local h, b, e = parse_lease(redis.call('HGET', KEYS[1], ARGV[1]))
if (not h) or h ~= ARGV[2] or e <= now then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[3], '{"kind":"lease-changed","ring":' .. ARGV[1] .. ',"holder":null,"ballot":null,"reason":"released"}')
return 1
`,
};

/** KEYS: leases. ARGV: ring. Returns {value or '', now}. */
const leaseOf: ScriptDef = {
  keys: 1,
  lua: `${PRELUDE}
return {redis.call('HGET', KEYS[1], ARGV[1]) or '', fmt(now_ms())}
`,
};

/**
 * KEYS: leases rings. ARGV: ring holder orderJson channel. Returns 1 done, 0 not the lease holder,
 * -1 ring unknown, -2 order not f+1 distinct acceptors of the ring.
 */
const setOrder: ScriptDef = {
  keys: 2,
  lua: `${PRELUDE}
local now = now_ms()
local h, b, e = parse_lease(redis.call('HGET', KEYS[1], ARGV[1]))
if (not h) or h ~= ARGV[2] or e <= now then return 0 end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return -1 end
local spec = cjson.decode(raw)
local order = cjson.decode(ARGV[3])
if #order ~= spec.f + 1 then return -2 end
local seen = {}
for _, a in ipairs(order) do
  local ok = false
  for _, x in ipairs(spec.acceptors) do if x == a then ok = true end end
  if (not ok) or seen[a] then return -2 end
  seen[a] = true
end
spec.ring = order
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(spec))
redis.call('PUBLISH', ARGV[4], '{"kind":"ring-changed","ring":' .. ARGV[1] .. ',"order":' .. ARGV[3] .. '}')
return 1
`,
};

/** KEYS: subs subRings. ARGV: learner channel event. */
const unsubscribe: ScriptDef = {
  keys: 2,
  lua: `${PRELUDE}
local now = now_ms()
local was = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if was and tonumber(was) > now then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
`,
};

/**
 * KEYS: live addrs leases subs subRings. ARGV: channel limit. Removes what expired and announces it;
 * any number of registries may sweep at once, each expiry is announced once.
 */
const sweep: ScriptDef = {
  keys: 5,
  lua: `${PRELUDE}
local now = now_ms()
local limit = tonumber(ARGV[2])
local n = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', fmt(now), 'LIMIT', 0, limit)) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('PUBLISH', ARGV[1], '{"kind":"node-expired","node":' .. id .. '}')
  n = n + 1
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', fmt(now), 'LIMIT', 0, limit)) do
  redis.call('ZREM', KEYS[4], id)
  redis.call('HDEL', KEYS[5], id)
  redis.call('PUBLISH', ARGV[1], '{"kind":"subscription-changed","learner":' .. id .. ',"rings":null,"reason":"expired"}')
  n = n + 1
end
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
  local h, b, e = parse_lease(all[i + 1])
  if (not h) or e <= now then
    redis.call('HDEL', KEYS[3], all[i])
    redis.call('PUBLISH', ARGV[1], '{"kind":"lease-changed","ring":' .. all[i] .. ',"holder":null,"ballot":null,"reason":"expired"}')
    n = n + 1
  end
end
return n
`,
};

export const SCRIPTS = { load, view, register, acquire, renew, release, leaseOf, setOrder, unsubscribe, sweep } as const;
export type ScriptName = keyof typeof SCRIPTS;
