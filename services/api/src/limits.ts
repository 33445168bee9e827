/**
 * Limits and quotas: each refusal is a 429 problem+json whose `limit` names the limit (and the setting that
 * sets it) with `Retry-After`. Every count lives in Redis, so that all API replicas share it.
 */
import type { ServerResponse } from 'node:http'
import { randomUUID } from 'node:crypto'
import type { Job, StoredServer } from '@porthole/contracts'
import { PortholeError } from '@porthole/contracts/errors'
import type { Logger } from '@porthole/shared/logging'
import { keys as keysOf, type Keys, type Redis } from '@porthole/shared/store'
import type { Principal } from './auth.js'
import type { ApiConfig } from './config.js'
import type { Ctx } from './context.js'
import { refuseIfSuspended } from './revocation.js'

/** The limits a 429 can name (`limit` in the problem body). */
export type LimitName = 'requests_per_key' | 'auth_failures_per_address' | 'console_sessions_per_server' | 'console_sessions_per_tenant' | 'event_streams_per_key' | 'jobs_queued_per_tenant' | 'webhooks_per_tenant' | 'requests_per_ops_session'

/** A refusal for a limit: 429 with `limit`, `max`, the setting and `retryAfter` (seconds) in the problem body. */
export function limitError (limit: LimitName, detail: string, o: { max: number, setting: string, retryAfter: number }): PortholeError {
  const retryAfter = Math.max(1, Math.ceil(o.retryAfter))
  return new PortholeError('busy', `${detail} (limit ${o.max}, ${o.setting}); retry after ${retryAfter} s`, { status: 429, details: { limit, max: o.max, setting: o.setting, retryAfter } })
}

/** The per-window request limit of a principal's role, and the setting that sets it. */
export function requestLimit (config: ApiConfig, p: Principal | undefined): { max: number, setting: string } {
  switch (p?.role) {
    case 'admin': return { max: config.RATE_LIMIT_ADMIN, setting: 'RATE_LIMIT_ADMIN' }
    case 'operator': return { max: config.RATE_LIMIT_OPERATOR, setting: 'RATE_LIMIT_OPERATOR' }
    default: return { max: config.RATE_LIMIT_CUSTOMER, setting: 'RATE_LIMIT_CUSTOMER' }
  }
}

// KEYS: counter. ARGV: window ms. Counts one failure; the window starts with the first.
const COUNT_FAILURE = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
`

/** Failed authentications per client address (req.ip, so X-Forwarded-For only with TRUST_PROXY). */
export class AuthFailures {
  private readonly k: Keys
  constructor (private readonly redis: Redis, ns: string, private readonly max: number, private readonly windowMs: number) {
    this.k = keysOf(ns)
    if (!('portholeCountFailure' in redis)) redis.defineCommand('portholeCountFailure', { numberOfKeys: 1, lua: COUNT_FAILURE })
  }

  /** Throws the 429 when the address has used up its failures in this window. */
  async check (ip: string): Promise<void> {
    const key = this.k.authFailures(ip)
    const n = await this.redis.get(key)
    if (n !== null && Number(n) >= this.max) {
      const ttl = await this.redis.pttl(key)
      throw limitError('auth_failures_per_address', 'too many failed authentications from this address', { max: this.max, setting: 'AUTH_FAILURE_LIMIT', retryAfter: ttl > 0 ? ttl / 1000 : this.windowMs / 1000 })
    }
  }

  async record (ip: string): Promise<void> {
    await (this.redis as unknown as { portholeCountFailure: (k: string, w: number) => Promise<number> }).portholeCountFailure(this.k.authFailures(ip), this.windowMs)
  }
}

/**
 * Admits a console job: 409 when the server's tenant is suspended, 429 when the server or its tenant has as
 * many live consoles as allowed. A slot is held by each console job under way (until its deadline at the
 * latest) and then by the session it became, until that expires or is revoked; counted in one step in Redis
 * per server and per tenant, so racing requests cannot both take the last slot and the cost does not grow
 * with the number of consoles open elsewhere.
 */
export async function admitConsole (ctx: Ctx, server: StoredServer, job: Job, now = Date.now()): Promise<void> {
  await refuseIfSuspended(ctx, server.tenantId)
  const perServer = ctx.config.CONSOLE_SESSIONS_PER_SERVER
  const perTenant = ctx.config.CONSOLE_SESSIONS_PER_TENANT
  const r = await ctx.sessions.admit({ serverId: server.id, tenantId: server.tenantId, jobId: job.id, deadlineMs: Date.parse(job.deadline), perServer, perTenant }, now)
  if (r.admitted) return
  const retryAfter = r.retryAfterMs / 1000
  if (r.full === 'server') throw limitError('console_sessions_per_server', 'this server has as many live console sessions as allowed', { max: perServer, setting: 'CONSOLE_SESSIONS_PER_SERVER', retryAfter })
  throw limitError('console_sessions_per_tenant', "this tenant's servers have as many live console sessions as allowed", { max: perTenant, setting: 'CONSOLE_SESSIONS_PER_TENANT', retryAfter })
}

// KEYS: the key's stream set. ARGV: now ms, lease expiry ms, limit, stream id, lease ms.
// Drops lapsed leases (a replica that died), then takes a slot if one is free.
const OPEN_STREAM = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`

/** What ends open event streams on every API replica (published on `events:access`). */
export type AccessEvent =
  | { type: 'api-key.revoked', apiKeyId: string }
  | { type: 'tenant.suspended', tenantId: string }
  /** A dashboard logout: the streams of that session (its id, the token's SHA-256) end. */
  | { type: 'ops-session.ended', opsSessionId: string }

const ACCESS_EVENTS = new Set<AccessEvent['type']>(['api-key.revoked', 'tenant.suspended', 'ops-session.ended'])

/** A message of the access channel as an AccessEvent; undefined for one of a kind this code does not know. */
export function parseAccessEvent (message: string): AccessEvent | undefined {
  try {
    const e = JSON.parse(message) as AccessEvent
    return ACCESS_EVENTS.has(e.type) ? e : undefined
  } catch { return undefined }
}

interface OpenStream { id: string, keyId: string, tenantId: string | undefined, opsSessionId: string | undefined, res: ServerResponse }

/**
 * The event streams (`GET /v1/events`) of this replica, and their count per API key across replicas: each
 * open stream holds a lease in Redis that its heartbeat renews, so a replica that dies frees its slots when
 * the leases lapse. Ends streams when their key is revoked, their tenant suspended or (the dashboard's) their
 * session logged out, on whichever replica.
 */
export class EventStreams {
  private readonly k: Keys
  private readonly open = new Map<ServerResponse, OpenStream>()
  private readonly leaseMs: number

  constructor (private readonly redis: Redis, ns: string, private readonly config: ApiConfig, private readonly log: Logger) {
    this.k = keysOf(ns)
    this.leaseMs = config.SSE_HEARTBEAT_SECONDS * 3000
    if (!('portholeOpenStream' in redis)) redis.defineCommand('portholeOpenStream', { numberOfKeys: 1, lua: OPEN_STREAM })
  }

  get channel (): string { return this.k.accessEvents }

  /** Takes a slot for a new stream of `p`; throws the 429 when the key holds as many as allowed. */
  async admit (p: Principal): Promise<string> {
    const id = randomUUID()
    const now = Date.now()
    const max = this.config.EVENT_STREAMS_PER_KEY
    const ok = await (this.redis as unknown as { portholeOpenStream: (...a: Array<string | number>) => Promise<number> })
      .portholeOpenStream(this.k.eventStreams(p.id), now, now + this.leaseMs, max, id, this.leaseMs)
    if (ok !== 1) throw limitError('event_streams_per_key', 'this API key has as many open event streams as allowed', { max, setting: 'EVENT_STREAMS_PER_KEY', retryAfter: this.config.SSE_HEARTBEAT_SECONDS })
    return id
  }

  /** Registers an admitted stream (of a dashboard session: `opsSessionId`); its slot is given back when it closes. */
  track (id: string, p: Principal, res: ServerResponse, opsSessionId?: string): void {
    this.open.set(res, { id, keyId: p.id, tenantId: p.tenantId, opsSessionId, res })
    res.once('close', () => {
      this.open.delete(res)
      this.redis.zrem(this.k.eventStreams(p.id), id).catch(() => {})
    })
  }

  /** Renews the lease of a stream (at each heartbeat). */
  renew (res: ServerResponse): void {
    const s = this.open.get(res)
    if (s === undefined) return
    // The set lives as long as its newest lease: a count that expired early would let a key open more.
    const key = this.k.eventStreams(s.keyId)
    this.redis.multi().zadd(key, 'XX', Date.now() + this.leaseMs, s.id).pexpire(key, this.leaseMs).exec().catch(() => {})
  }

  /** Tells every replica (this one included) to end the matching streams. */
  async publish (e: AccessEvent): Promise<void> {
    this.end(e)
    await this.redis.publish(this.k.accessEvents, JSON.stringify(e))
  }

  /** A message from the access channel. */
  onMessage (message: string): void {
    const e = parseAccessEvent(message)
    if (e !== undefined) this.end(e)
  }

  private end (e: AccessEvent): void {
    for (const s of [...this.open.values()]) {
      if (!endedBy(s, e)) continue
      this.log.info({ streamId: s.id, reason: e.type }, 'event stream ended')
      s.res.end(`event: end\ndata: ${JSON.stringify({ reason: e.type })}\n\n`)
    }
  }

  /** At shutdown: open streams would keep the server from closing. */
  endAll (): void { for (const s of this.open.values()) s.res.end() }
}

function endedBy (s: OpenStream, e: AccessEvent): boolean {
  switch (e.type) {
    case 'api-key.revoked': return s.keyId === e.apiKeyId
    case 'tenant.suspended': return s.tenantId !== undefined && s.tenantId === e.tenantId
    case 'ops-session.ended': return s.opsSessionId === e.opsSessionId
  }
}
