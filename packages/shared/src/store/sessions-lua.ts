/** The console sessions' Lua scripts (each one atomic step on a session and its indexes), apart from the store that runs them. */
import { xaddLua } from './events.js'

/** Sessions stay readable this long after expiry, so the page can say "expired" rather than "unknown". */
export const GRACE_SECONDS = 600

// KEYS: session, token. ARGV: field ('usedAt'|'revokedAt'), at, events channel, the resume hash to keep with usedAt
// ('' for none), event stream, its max length.
// Sets the field once; returns 1 when this call set it, 0 when it was set already, -1 when missing.
export const MARK = `
local raw = redis.call('GET', KEYS[1])
if not raw then return -1 end
local s = cjson.decode(raw)
if s[ARGV[1]] then return 0 end
s[ARGV[1]] = ARGV[2]
if ARGV[1] == 'usedAt' and ARGV[4] ~= '' then s.resumeHash = ARGV[4] end
redis.call('SET', KEYS[1], cjson.encode(s), 'KEEPTTL')
if ARGV[1] == 'revokedAt' then
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', ARGV[3], cjson.encode({type = 'revoked', sessionId = s.id}))
  ${xaddLua('ARGV[5]', 'ARGV[6]', 'console', "{sessionId = s.id, tenantId = s.tenantId, serverId = s.serverId, event = 'revoked', at = ARGV[2]}")}
end
return 1
`

// KEYS: session, token, sessions index, server's slots, tenant's slots, event stream, expiry sweep index, URL
// hand-over ('' without one). ARGV: session JSON, its TTL, the token's TTL, the expiry ms, session id, the slots'
// TTL, the stream's max length, the 'opened' event JSON, the sealed URL JSON ('' without a hand-over), its TTL,
// the job's slot member. Stores a new session in one step (what was one MULTI of thirteen commands): the record,
// its token, its indexes, its console slots in place of its job's, the 'opened' event, and the URL hand-over.
export const CREATE_SESSION = `
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[5])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[5])
redis.call('EXPIRE', KEYS[4], ARGV[6])
redis.call('EXPIRE', KEYS[5], ARGV[6])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[7], '*', 'type', 'console', 'data', ARGV[8])
redis.call('ZADD', KEYS[7], ARGV[4], ARGV[5])
if ARGV[9] ~= '' then
  redis.call('SET', KEYS[8], ARGV[9], 'EX', ARGV[10])
  redis.call('ZREM', KEYS[4], ARGV[11])
  redis.call('ZREM', KEYS[5], ARGV[11])
end
return 1
`

// KEYS: session. ARGV: the new sealed target (JSON). Replaces the target of a session that is not revoked;
// returns 1 when it did, 0 when the session is gone or revoked.
export const SET_TARGET = `
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local s = cjson.decode(raw)
if s.revokedAt then return 0 end
s.target = cjson.decode(ARGV[1])
redis.call('SET', KEYS[1], cjson.encode(s), 'KEEPTTL')
return 1
`

// KEYS: session, token, expiry index, server's slots, tenant's slots, viewer, expiry sweep index. ARGV: the expiry read (compare
// and set: a renewal racing another one retries), the new expiry, its ms, the session's TTL, the token's TTL,
// the events channel. Moves a live session's expiry, and every key that lives as long; returns 1 when it did,
// 0 when the expiry changed meanwhile, -1 when the session is gone or revoked.
export const RENEW = `
local raw = redis.call('GET', KEYS[1])
if not raw then return -1 end
local s = cjson.decode(raw)
if s.revokedAt then return -1 end
if s.expiresAt ~= ARGV[1] then return 0 end
s.expiresAt = ARGV[2]
redis.call('SET', KEYS[1], cjson.encode(s), 'EX', ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[3], s.id)
for i = 4, 5 do
  redis.call('ZADD', KEYS[i], 'XX', ARGV[3], s.id)
end
if redis.call('EXISTS', KEYS[6]) == 1 then redis.call('EXPIRE', KEYS[6], ARGV[5]) end
redis.call('ZADD', KEYS[7], ARGV[3], s.id)
redis.call('PUBLISH', ARGV[6], cjson.encode({type = 'renewed', sessionId = s.id, expiresAt = ARGV[2]}))
return 1
`

// KEYS: the server's slots, the tenant's slots. ARGV: now ms, max per server, max per tenant, member (`job:<id>`),
// its score (when it frees at the latest: the job's deadline), the sets' TTL in seconds.
// Drops what has freed, then takes a slot on both when both have one; returns {0|1|2, ms until one frees}:
// 0 admitted, 1 the server is full, 2 the tenant is. One step, so racing requests cannot both take the last.
export const ADMIT = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
local function soonest (k)
  local r = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
  if r[2] then return tonumber(r[2]) - tonumber(ARGV[1]) end
  return 0
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return {1, soonest(KEYS[1])} end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return {2, soonest(KEYS[2])} end
redis.call('ZADD', KEYS[1], ARGV[5], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return {0, 0}
`

// KEYS: the viewer record, the session, the viewer-left note. ARGV: viewer id, at, event stream, its max length,
// grace seconds (0: none). Clears the viewer record if that viewer still holds it, notes for the grace that the
// session's viewer left (a single-use session's own viewer may come back meanwhile: `mayResume`), and tells the
// event stream the session's viewer left.
export const DROP_VIEWER = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if tonumber(ARGV[5]) > 0 then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[5]) end
local raw = redis.call('GET', KEYS[2])
if raw then
  local s = cjson.decode(raw)
  ${xaddLua('ARGV[3]', 'ARGV[4]', 'console', "{sessionId = s.id, tenantId = s.tenantId, serverId = s.serverId, event = 'closed', at = ARGV[2]}")}
end
return 1
`

// KEYS: sessions by expiry (sessionsExpiring). ARGV: now ms, the session key prefix, event stream, its max length.
// Takes up to 100 sessions whose time has run out and tells the event stream of each that was not revoked
// first. One step, so that of several gateways sweeping only one tells of each session. Returns how many.
export const SWEEP_EXPIRED = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
local n = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local raw = redis.call('GET', ARGV[2] .. id)
  if raw then
    local s = cjson.decode(raw)
    if not s.revokedAt then
      ${xaddLua('ARGV[3]', 'ARGV[4]', 'console', "{sessionId = s.id, tenantId = s.tenantId, serverId = s.serverId, event = 'expired', at = s.expiresAt}")}
      n = n + 1
    end
  end
end
return n
`
