// Over 300 lines: one store for a pool and its clones, whose Lua steps (claim, ready, dispose, failures) must share keys and the event writes.
/**
 * Kiosk pools in Redis: each pool's spec (JSON, written by the API) and state (hash fields the pool controller
 * and the API change in Lua, compare-and-set on `generation`), its clones (a hash of PoolClone by domain name),
 * its ready list, and its recent clone failures. Every change a visitor or an operator may care about appends
 * a PoolEvent to the event stream in the same step (events.ts).
 *
 * The hand-out is one Lua step (`claim`): it pops a ready clone and marks it `claimed`, so a clone is taken by
 * exactly one request, ever; a clone never returns to `ready` (the scripts only move a clone forward).
 */
import type { Redis } from 'ioredis'
import {
  POOL_FAILURE_LIMIT, POOL_FAILURE_WINDOW_SECONDS,
  type DisposeReason, type Pool, type PoolClone, type PoolCreate, type PoolEvent, type PoolEventName, type PoolPatch, type PoolState, type PoolView
} from '@porthole/contracts'
import { EVENT_STREAM_MAX_LENGTH, xaddLua } from './events.js'
import { keys as keysOf, type Keys } from './redis.js'

/** The Lua table of a PoolEvent: `extra` adds members (`serverId = c.serverId`). */
function poolEventLua (event: PoolEventName, extra = ''): string {
  return `{pool = ARGV[1], tenantId = ARGV[2], event = '${event}', at = ARGV[3]${extra === '' ? '' : ', ' + extra}}`
}
// Every script's ARGV begins with: pool name, tenant id, now (ISO), event stream, its max length.
const xadd = (event: PoolEventName, extra = ''): string => xaddLua('ARGV[4]', 'ARGV[5]', 'pool', poolEventLua(event, extra))

// KEYS: ready list, clones. Pops ready clones until one is still `ready`; marks it claimed. Returns its JSON or nil.
const CLAIM = `
while true do
  local name = redis.call('RPOP', KEYS[1])
  if not name then return nil end
  local raw = redis.call('HGET', KEYS[2], name)
  if raw then
    local c = cjson.decode(raw)
    if c.state == 'ready' then
      c.state = 'claimed'
      c.claimedAt = ARGV[3]
      local out = cjson.encode(c)
      redis.call('HSET', KEYS[2], name, out)
      ${xadd('handed-out', 'serverId = c.serverId, slot = c.slot')}
      return out
    end
  end
end
`

// KEYS: clones. ARGV[6]: name, ARGV[7]: session id. claimed → in_use; returns 1, or 0 when it is no longer claimed.
const BIND = `
local raw = redis.call('HGET', KEYS[1], ARGV[6])
if not raw then return 0 end
local c = cjson.decode(raw)
if c.state ~= 'claimed' then return 0 end
c.state = 'in_use'
c.sessionId = ARGV[7]
redis.call('HSET', KEYS[1], ARGV[6], cjson.encode(c))
return 1
`

// KEYS: clones. ARGV[6]: name, ARGV[7]: when its viewer left ('' : a viewer is back). Only an in_use clone's
// record changes (a clone being disposed meanwhile stays disposing); 1 or 0.
const LEFT = `
local raw = redis.call('HGET', KEYS[1], ARGV[6])
if not raw then return 0 end
local c = cjson.decode(raw)
if c.state ~= 'in_use' then return 0 end
if ARGV[7] == '' then c.leftAt = nil else c.leftAt = ARGV[7] end
redis.call('HSET', KEYS[1], ARGV[6], cjson.encode(c))
return 1
`

// KEYS: pool, clones, ready. ARGV[6]: name. starting → ready (while the pool is neither deleting nor gone); 1 or 0.
const READY = `
if redis.call('HGET', KEYS[1], 'state') == 'deleting' or redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local raw = redis.call('HGET', KEYS[2], ARGV[6])
if not raw then return 0 end
local c = cjson.decode(raw)
if c.state ~= 'starting' then return 0 end
c.state = 'ready'
c.readyAt = ARGV[3]
redis.call('HSET', KEYS[2], ARGV[6], cjson.encode(c))
redis.call('LPUSH', KEYS[3], ARGV[6])
${xadd('ready', 'serverId = c.serverId, slot = c.slot')}
return 1
`

// KEYS: clones, ready. ARGV[6]: name, ARGV[7]: reason. Any state → disposing (once); returns the clone as it
// was, or nil when it is disposing already or gone.
const DISPOSE = `
local raw = redis.call('HGET', KEYS[1], ARGV[6])
if not raw then return nil end
local c = cjson.decode(raw)
if c.state == 'disposing' then return nil end
c.state = 'disposing'
c.disposeReason = ARGV[7]
redis.call('HSET', KEYS[1], ARGV[6], cjson.encode(c))
redis.call('LREM', KEYS[2], 0, ARGV[6])
return raw
`

// KEYS: clones, ready, server index. ARGV[6]: name, ARGV[7]: reason. Forgets a destroyed clone.
const REMOVE = `
local raw = redis.call('HGET', KEYS[1], ARGV[6])
if not raw then return 0 end
local c = cjson.decode(raw)
redis.call('HDEL', KEYS[1], ARGV[6])
redis.call('LREM', KEYS[2], 0, ARGV[6])
redis.call('HDEL', KEYS[3], c.serverId)
${xadd('disposed', 'serverId = c.serverId, slot = c.slot, reason = ARGV[7]')}
return 1
`

// KEYS: pool, failures. ARGV[6]: error, ARGV[7]: now ms, ARGV[8]: window ms, ARGV[9]: limit, ARGV[10]: generation,
// ARGV[11]: slot. Records a clone failure; the pool turns failing at the limit. Returns the failures in the window.
const FAILURE = `
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[7] .. '-' .. redis.call('ZCARD', KEYS[2]))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[7]) - tonumber(ARGV[8]))
redis.call('PEXPIRE', KEYS[2], ARGV[8])
local n = redis.call('ZCARD', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 0 then return n end
redis.call('HSET', KEYS[1], 'lastError', ARGV[6], 'lastErrorAt', ARGV[3])
${xadd('clone-failed', 'slot = tonumber(ARGV[11]), reason = ARGV[6]')}
if n >= tonumber(ARGV[9]) and redis.call('HGET', KEYS[1], 'state') == 'active' and redis.call('HGET', KEYS[1], 'generation') == ARGV[10] then
  redis.call('HSET', KEYS[1], 'state', 'failing')
  ${xadd('failing', 'reason = ARGV[6]')}
end
return n
`

// KEYS: pool, failures. ARGV[6]: generation checked, ARGV[7]: '' when it passed, else why not, ARGV[8]: image.
// checking → active (passed) or failing (refused), for the generation that was checked only; 1 or 0.
const CHECKED = `
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[6] or redis.call('HGET', KEYS[1], 'state') ~= 'checking' then return 0 end
if ARGV[7] == '' then
  redis.call('HSET', KEYS[1], 'state', 'active', 'image', ARGV[8])
  redis.call('HDEL', KEYS[1], 'lastError', 'lastErrorAt')
  redis.call('DEL', KEYS[2])
  ${xadd('checked')}
else
  redis.call('HSET', KEYS[1], 'state', 'failing', 'lastError', ARGV[7], 'lastErrorAt', ARGV[3])
  ${xadd('refused', 'reason = ARGV[7]')}
end
return 1
`

// KEYS: pool. ARGV[6]: spec JSON, ARGV[7]: '1' when the template is to be checked again (a new generation,
// \`checking\`: its clones are remade), '' when the spec changes in place (its clones stay).
const CHANGE = `
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HGET', KEYS[1], 'state') == 'deleting' then return -1 end
redis.call('HSET', KEYS[1], 'spec', ARGV[6], 'updatedAt', ARGV[3])
local g = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0')
if ARGV[7] == '1' then
  redis.call('HSET', KEYS[1], 'state', 'checking')
  g = redis.call('HINCRBY', KEYS[1], 'generation', 1)
end
${xadd('changed')}
return g
`

type Script = (...a: Array<string | number>) => Promise<unknown>
const SCRIPTS = { portholePoolClaim: [2, CLAIM], portholePoolBind: [1, BIND], portholePoolLeft: [1, LEFT], portholePoolReady: [3, READY], portholePoolDispose: [2, DISPOSE], portholePoolRemove: [3, REMOVE], portholePoolFailure: [2, FAILURE], portholePoolChecked: [2, CHECKED], portholePoolChange: [1, CHANGE] } as const

/** What the API writes of a pool (its spec); the rest of a Pool is state. */
type PoolSpec = Pick<Pool, 'name' | 'tenantId' | 'poolId' | 'template' | 'size' | 'idleTimeoutSeconds' | 'maxSessionSeconds' | 'hooks' | 'attract' | 'createdAt'>

/** The counts of a pool's view, from its clones. */
export function cloneCounts (clones: readonly PoolClone[]): Pick<PoolView, 'ready' | 'starting' | 'inUse'> {
  const n = { ready: 0, starting: 0, inUse: 0 }
  for (const c of clones) {
    if (c.state === 'ready') n.ready++
    else if (c.state === 'starting') n.starting++
    else if (c.state === 'claimed' || c.state === 'in_use') n.inUse++
  }
  return n
}

export class PoolStore {
  private readonly k: Keys
  constructor (private readonly redis: Redis, ns: string) {
    this.k = keysOf(ns)
    for (const [name, [numberOfKeys, lua]] of Object.entries(SCRIPTS)) if (!(name in redis)) redis.defineCommand(name, { numberOfKeys, lua })
  }

  private run (name: keyof typeof SCRIPTS, keys: string[], pool: { name: string, tenantId: string }, ...args: Array<string | number>): Promise<unknown> {
    return ((this.redis as unknown as Record<string, Script>)[name] as Script)(...keys, pool.name, pool.tenantId, new Date().toISOString(), this.k.eventStream, EVENT_STREAM_MAX_LENGTH, ...args)
  }

  /** Stores a new pool, `checking`; undefined when the name is taken. */
  async create (c: PoolCreate, defaults: { idleTimeoutSeconds: number, maxSessionSeconds: number }): Promise<Pool | undefined> {
    const now = new Date().toISOString()
    const poolId = ((await this.redis.incr(this.k.poolIds)) - 1) % 65535 + 1
    const spec: PoolSpec = {
      name: c.name, tenantId: c.tenantId, poolId, template: c.template, size: c.size, idleTimeoutSeconds: c.idleTimeoutSeconds ?? defaults.idleTimeoutSeconds,
      maxSessionSeconds: c.maxSessionSeconds ?? defaults.maxSessionSeconds, hooks: c.hooks ?? [], attract: c.attract ?? [], createdAt: now
    }
    const key = this.k.pool(c.name)
    const r = await this.redis.multi().hsetnx(key, 'spec', JSON.stringify(spec)).exec()
    if (r?.[0]?.[1] !== 1) return undefined
    await this.redis.multi()
      .hset(key, 'state', 'checking', 'generation', 1, 'updatedAt', now)
      .zadd(this.k.pools, Date.parse(now), c.name)
      .xadd(this.k.eventStream, 'MAXLEN', '~', EVENT_STREAM_MAX_LENGTH, '*', 'type', 'pool', 'data', JSON.stringify({ pool: c.name, tenantId: c.tenantId, event: 'changed', at: now } satisfies PoolEvent))
      .exec()
    return await this.get(c.name)
  }

  async get (name: string): Promise<Pool | undefined> {
    const h = await this.redis.hgetall(this.k.pool(name))
    return h.spec === undefined ? undefined : poolOf(h)
  }

  async list (tenantId?: string): Promise<Pool[]> {
    const names = await this.redis.zrange(this.k.pools, 0, -1)
    const all = await Promise.all(names.map(async n => await this.get(n)))
    return all.filter((p): p is Pool => p !== undefined && (tenantId === undefined || p.tenantId === tenantId))
  }

  /** Whether a PATCH has the template checked again (see `change`). */
  static rechecks (pool: Pool, patch: PoolPatch): boolean {
    return pool.state === 'failing' || patch.template !== undefined || patch.hooks !== undefined
  }

  /**
   * Applies a PATCH. One that names the template or the hooks, or any PATCH of a failing pool, has the
   * template checked again (a new generation, `checking`: the warm clones are remade); any other (size,
   * pictures, timeouts) changes the spec in place and keeps the clones. The new pool, or undefined when gone or deleting.
   */
  async change (pool: Pool, patch: PoolPatch, recheck = PoolStore.rechecks(pool, patch)): Promise<Pool | undefined> {
    const spec: PoolSpec = { ...specOf(pool), ...patch }
    const g = await this.run('portholePoolChange', [this.k.pool(pool.name)], pool, JSON.stringify(spec), recheck ? '1' : '') as number
    return g < 0 ? undefined : await this.get(pool.name)
  }

  /** Marks a pool `deleting`: the controller destroys its clones, then `forget`s it. */
  async markDeleting (pool: Pool): Promise<void> {
    await this.redis.multi().hset(this.k.pool(pool.name), 'state', 'deleting', 'updatedAt', new Date().toISOString())
      .xadd(this.k.eventStream, 'MAXLEN', '~', EVENT_STREAM_MAX_LENGTH, '*', 'type', 'pool', 'data', JSON.stringify({ pool: pool.name, tenantId: pool.tenantId, event: 'changed', at: new Date().toISOString() } satisfies PoolEvent))
      .exec()
  }

  /** Removes a pool's every key (its clones must be gone). */
  async forget (name: string): Promise<void> {
    await this.redis.multi().del(this.k.pool(name), this.k.poolClones(name), this.k.poolReady(name), this.k.poolFailures(name), this.k.poolSerial(name)).zrem(this.k.pools, name).exec()
  }

  /** The outcome of a template check of `generation`: `problem` undefined when it passed. */
  async checked (pool: Pool, generation: number, problem: string | undefined, image = ''): Promise<boolean> {
    return await this.run('portholePoolChecked', [this.k.pool(pool.name), this.k.poolFailures(pool.name)], pool, generation, problem ?? '', image) === 1
  }

  /** A view of the pool: its spec and state, and its clones counted (`known`: its clones, when just read). */
  async view (pool: Pool, known?: PoolClone[]): Promise<PoolView> {
    const [clones, failing] = await Promise.all([known ?? this.clones(pool.name), this.redis.zcount(this.k.poolFailures(pool.name), Date.now() - POOL_FAILURE_WINDOW_SECONDS * 1000, '+inf')])
    const { image: _image, ...rest } = pool
    return { ...rest, ...cloneCounts(clones), failing }
  }

  // --- clones -------------------------------------------------------------------------------------------

  async clones (pool: string): Promise<PoolClone[]> {
    return Object.values(await this.redis.hgetall(this.k.poolClones(pool))).map(r => JSON.parse(r) as PoolClone)
  }

  async clone (pool: string, name: string): Promise<PoolClone | undefined> {
    const raw = await this.redis.hget(this.k.poolClones(pool), name)
    return raw === null ? undefined : JSON.parse(raw) as PoolClone
  }

  /** A fresh serial for a clone's name: never the same twice for a pool (a counter, and random digits in case Redis lost it). */
  async serial (pool: string): Promise<string> {
    const n = await this.redis.incr(this.k.poolSerial(pool))
    return `${n.toString(36)}${Math.floor(Math.random() * 36 ** 4).toString(36).padStart(4, '0')}`
  }

  /** Records a clone about to be made (`starting`), before anything exists of it: a crash leaves a record to clean up after. */
  async addClone (c: PoolClone): Promise<void> {
    await this.redis.multi().hset(this.k.poolClones(c.pool), c.name, JSON.stringify(c)).hset(this.k.poolServers, c.serverId, `${c.pool}/${c.name}`).exec()
  }

  /** The pool and clone a server record is, or undefined for a server of no pool. */
  async cloneOfServer (serverId: string): Promise<{ pool: string, name: string } | undefined> {
    const v = await this.redis.hget(this.k.poolServers, serverId)
    if (v === null) return undefined
    const [pool = '', name = ''] = v.split('/')
    return { pool, name }
  }

  /** starting → ready, into the ready list (and the event stream); false when the clone or its pool went meanwhile. */
  async markReady (pool: Pool, name: string): Promise<boolean> {
    return await this.run('portholePoolReady', [this.k.pool(pool.name), this.k.poolClones(pool.name), this.k.poolReady(pool.name)], pool, name) === 1
  }

  /** The hand-out: takes one ready clone (claimed, never again ready), or undefined when none is. */
  async claim (pool: Pool): Promise<PoolClone | undefined> {
    const raw = await this.run('portholePoolClaim', [this.k.poolReady(pool.name), this.k.poolClones(pool.name)], pool) as string | null
    return raw === null ? undefined : JSON.parse(raw) as PoolClone
  }

  /** Tells the event stream of a hand-out that found no ready clone. */
  async recordMiss (pool: Pool): Promise<void> {
    await this.redis.xadd(this.k.eventStream, 'MAXLEN', '~', EVENT_STREAM_MAX_LENGTH, '*', 'type', 'pool', 'data', JSON.stringify({ pool: pool.name, tenantId: pool.tenantId, event: 'miss', at: new Date().toISOString() } satisfies PoolEvent))
  }

  /** claimed → in_use with its console session; false when the clone is no longer claimed (disposal took it). */
  async bindSession (pool: Pool, name: string, sessionId: string): Promise<boolean> {
    return await this.run('portholePoolBind', [this.k.poolClones(pool.name)], pool, name, sessionId) === 1
  }

  /** Notes when a clone's viewer left (the disconnect grace), or clears it (`at` undefined: a viewer is back). */
  async setLeft (pool: Pool, name: string, at: string | undefined): Promise<void> {
    await this.run('portholePoolLeft', [this.k.poolClones(pool.name)], pool, name, at ?? '')
  }

  /** Any state → disposing (once): the clone as it was, or undefined when it is being disposed already or gone. */
  async startDisposal (pool: Pool, name: string, reason: DisposeReason): Promise<PoolClone | undefined> {
    const raw = await this.run('portholePoolDispose', [this.k.poolClones(pool.name), this.k.poolReady(pool.name)], pool, name, reason) as string | null
    return raw === null ? undefined : JSON.parse(raw) as PoolClone
  }

  /** Forgets a clone whose domain and overlay are gone (the event stream hears `disposed`). */
  async removeClone (pool: Pool, name: string, reason: string): Promise<void> {
    await this.run('portholePoolRemove', [this.k.poolClones(pool.name), this.k.poolReady(pool.name), this.k.poolServers], pool, name, reason)
  }

  /** Records a clone failure; the failures within the window (the pool turns `failing` at POOL_FAILURE_LIMIT). */
  async recordFailure (pool: Pool, generation: number, slot: number, error: string, now = Date.now()): Promise<number> {
    return await this.run('portholePoolFailure', [this.k.pool(pool.name), this.k.poolFailures(pool.name)], pool, error.slice(0, 1000), now, POOL_FAILURE_WINDOW_SECONDS * 1000, POOL_FAILURE_LIMIT, generation, slot) as number
  }
}

function specOf (p: Pool): PoolSpec {
  return { name: p.name, tenantId: p.tenantId, poolId: p.poolId, template: p.template, size: p.size, idleTimeoutSeconds: p.idleTimeoutSeconds, maxSessionSeconds: p.maxSessionSeconds, hooks: p.hooks, attract: p.attract, createdAt: p.createdAt }
}

function poolOf (h: Record<string, string>): Pool {
  const spec = JSON.parse(h.spec as string) as PoolSpec
  const p: Pool = { ...spec, state: (h.state ?? 'checking') as PoolState, generation: Number(h.generation ?? 1), updatedAt: h.updatedAt ?? spec.createdAt }
  if (h.image !== undefined && h.image !== '') p.image = h.image
  if (h.lastError !== undefined) p.lastError = h.lastError
  if (h.lastErrorAt !== undefined) p.lastErrorAt = h.lastErrorAt
  return p
}
