/**
 * Console sessions in Redis, shared by every gateway replica and the API. Only the SHA-256 of a URL token
 * is stored. Revocations and viewer take-overs are published on a channel so that whichever gateway holds
 * the live socket closes it.
 */
import type { Redis } from 'ioredis'
import { MAX_CONSOLE_TOTAL_SECONDS, type ConsoleEvent, type ConsoleEventName, type ConsoleSession, type Sealed } from '@porthole/contracts'
import { EVENT_STREAM_MAX_LENGTH } from './events.js'
import { keys as keysOf, type Keys } from './redis.js'
import { ADMIT, CREATE_SESSION, DROP_VIEWER, GRACE_SECONDS, MARK, RENEW, SET_TARGET, SWEEP_EXPIRED } from './sessions-lua.js'

/** Console slots outlive their longest member: a session lives at most a day, renewals included (freed members are trimmed by score at each admission). */
const SLOTS_TTL_SECONDS = MAX_CONSOLE_TOTAL_SECONDS + GRACE_SECONDS

/** Why a console request was not admitted, and how long until a slot frees. */
export type ConsoleAdmission = { admitted: true } | { admitted: false, full: 'server' | 'tenant', retryAfterMs: number }

/** A console job's URL on its way from the gateway to the API: sealed, kept at most `ttlSeconds` for the API to take. */
export interface UrlHandover { jobId: string, sealedUrl: Sealed, ttlSeconds: number }

export type SessionEvent = { type: 'revoked', sessionId: string } | { type: 'viewer', sessionId: string, viewerId: string } | { type: 'renewed', sessionId: string, expiresAt: string } | { type: 'watchers', sessionId: string }

/** A renewal's outcome: the new expiry, or why there is none. */
export type Renewal = { ok: true, session: ConsoleSession } | { ok: false, reason: 'gone' | 'revoked' | 'expired' | 'at-limit' }

export class ConsoleSessionStore {
  private readonly k: Keys
  constructor (private readonly redis: Redis, ns: string) {
    this.k = keysOf(ns)
    if (!('portholeSessionCreate' in redis)) redis.defineCommand('portholeSessionCreate', { numberOfKeys: 8, lua: CREATE_SESSION })
    if (!('portholeSessionMark' in redis)) redis.defineCommand('portholeSessionMark', { numberOfKeys: 2, lua: MARK })
    if (!('portholeSessionTarget' in redis)) redis.defineCommand('portholeSessionTarget', { numberOfKeys: 1, lua: SET_TARGET })
    if (!('portholeSessionRenew' in redis)) redis.defineCommand('portholeSessionRenew', { numberOfKeys: 7, lua: RENEW })
    if (!('portholeConsoleAdmit' in redis)) redis.defineCommand('portholeConsoleAdmit', { numberOfKeys: 2, lua: ADMIT })
    if (!('portholeDropViewer' in redis)) redis.defineCommand('portholeDropViewer', { numberOfKeys: 3, lua: DROP_VIEWER })
    if (!('portholeSweepExpired' in redis)) redis.defineCommand('portholeSweepExpired', { numberOfKeys: 1, lua: SWEEP_EXPIRED })
  }

  /**
   * Takes a console slot of the server and of its tenant for a console job, until its deadline at the latest:
   * the session it becomes takes the slot over (`create`) until it expires or is revoked. A slot count is one
   * sorted set per server and per tenant, so admission costs the same however many consoles are open elsewhere.
   */
  async admit (c: { serverId: string, tenantId: string, jobId: string, deadlineMs: number, perServer: number, perTenant: number }, now = Date.now()): Promise<ConsoleAdmission> {
    const [code, ms] = await (this.redis as unknown as { portholeConsoleAdmit: (...a: Array<string | number>) => Promise<[number, number]> })
      .portholeConsoleAdmit(this.k.consoleSlotsOfServer(c.serverId), this.k.consoleSlotsOfTenant(c.tenantId), now, c.perServer, c.perTenant, `job:${c.jobId}`, c.deadlineMs, SLOTS_TTL_SECONDS)
    return code === 0 ? { admitted: true } : { admitted: false, full: code === 1 ? 'server' : 'tenant', retryAfterMs: Math.max(0, ms) }
  }

  /**
   * Stores a new session; with `handover`, the gateway's half of its job's URL hand-over too, in the same
   * Lua step (one round trip, and never a session whose URL is missing): the URL carries the session's
   * token, so it travels neither in the job's result nor in any message, only sealed (transit key, aad
   * `urlHandoverAad(jobId)`) under a key the API takes once (`takeUrlHandover`). The session takes over its
   * job's console slots.
   */
  async create (s: ConsoleSession, handover?: UrlHandover): Promise<void> {
    const exp = Date.parse(s.expiresAt)
    const ttl = Math.max(1, Math.ceil((exp - Date.now()) / 1000))
    await (this.redis as unknown as { portholeSessionCreate: (...a: Array<string | number>) => Promise<number> }).portholeSessionCreate(
      this.k.session(s.id), this.k.sessionByToken(s.tokenHash), this.k.sessions, this.k.consoleSlotsOfServer(s.serverId), this.k.consoleSlotsOfTenant(s.tenantId),
      this.k.eventStream, this.k.sessionsExpiring, handover === undefined ? '' : this.k.consoleUrlHandover(handover.jobId),
      JSON.stringify(s), ttl + GRACE_SECONDS, ttl, exp, s.id, SLOTS_TTL_SECONDS, EVENT_STREAM_MAX_LENGTH, JSON.stringify(consoleEvent(s, 'opened', s.createdAt)),
      handover === undefined ? '' : JSON.stringify(handover.sealedUrl), handover === undefined ? 0 : Math.max(1, Math.ceil(handover.ttlSeconds)), handover === undefined ? '' : `job:${handover.jobId}`
    )
  }

  async get (id: string): Promise<ConsoleSession | undefined> {
    const raw = await this.redis.get(this.k.session(id))
    return raw === null ? undefined : JSON.parse(raw) as ConsoleSession
  }

  /** The session a token opens: undefined when unknown, expired or revoked. */
  async findByTokenHash (hash: string): Promise<ConsoleSession | undefined> {
    const id = await this.redis.get(this.k.sessionByToken(hash))
    if (id === null) return undefined
    const s = await this.get(id)
    if (s === undefined || s.tokenHash !== hash || s.revokedAt !== undefined || Date.parse(s.expiresAt) <= Date.now()) return undefined
    return s
  }

  /** Sessions not yet expired (revoked ones included until they expire, so they can be shown as such). */
  async listLive (f: { tenantId?: string, serverId?: string } = {}, now = Date.now()): Promise<ConsoleSession[]> {
    await this.redis.zremrangebyscore(this.k.sessions, 0, now)
    const ids = await this.redis.zrangebyscore(this.k.sessions, now, '+inf')
    if (ids.length === 0) return []
    const raws = await this.redis.mget(ids.map(id => this.k.session(id)))
    return raws.filter((r): r is string => r !== null).map(r => JSON.parse(r) as ConsoleSession)
      .filter(s => (f.tenantId === undefined || s.tenantId === f.tenantId) && (f.serverId === undefined || s.serverId === f.serverId))
  }

  /**
   * Replaces a live session's sealed target, in one step with every other change to the record (a serial
   * console's bridge ticket is good for one connection: the gateway keeps its successor here). False when
   * the session is gone or revoked.
   */
  async replaceTarget (id: string, target: Sealed): Promise<boolean> {
    return await (this.redis as unknown as { portholeSessionTarget: (...a: string[]) => Promise<number> })
      .portholeSessionTarget(this.k.session(id), JSON.stringify(target)) === 1
  }

  /** Whether each session can still be used: known, not revoked, not expired (one round trip). */
  async areLive (ids: string[], now = Date.now()): Promise<boolean[]> {
    if (ids.length === 0) return []
    const raws = await this.redis.mget(ids.map(id => this.k.session(id)))
    return raws.map(raw => {
      if (raw === null) return false
      const s = JSON.parse(raw) as ConsoleSession
      return s.revokedAt === undefined && Date.parse(s.expiresAt) > now
    })
  }

  /**
   * Renews a live session: its expiry becomes `ttlSeconds` from now (never earlier than it was, never later
   * than its `maxExpiresAt`), with its token, its viewer record and its console slots, and every gateway is
   * told (`renewed`); the one holding its viewer reads the new expiry from here when the old one comes.
   */
  async renew (id: string, ttlSeconds: number, now = Date.now()): Promise<Renewal> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const s = await this.get(id)
      if (s === undefined) return { ok: false, reason: 'gone' }
      if (s.revokedAt !== undefined) return { ok: false, reason: 'revoked' }
      const current = Date.parse(s.expiresAt)
      if (current <= now) return { ok: false, reason: 'expired' }
      const cap = s.maxExpiresAt === undefined ? Infinity : Date.parse(s.maxExpiresAt)
      if (current >= cap) return { ok: false, reason: 'at-limit' }
      const want = Math.min(now + ttlSeconds * 1000, cap)
      if (want <= current) return { ok: true, session: s } // already expires later than asked
      const expiresAt = new Date(want).toISOString()
      const ttl = Math.max(1, Math.ceil((want - now) / 1000))
      const r = await (this.redis as unknown as { portholeSessionRenew: (...a: Array<string | number>) => Promise<number> }).portholeSessionRenew(
        this.k.session(id), this.k.sessionByToken(s.tokenHash), this.k.sessions, this.k.consoleSlotsOfServer(s.serverId), this.k.consoleSlotsOfTenant(s.tenantId), this.k.sessionViewer(id), this.k.sessionsExpiring,
        s.expiresAt, expiresAt, want, ttl + GRACE_SECONDS, ttl, this.k.sessionEvents)
      if (r === 1) return { ok: true, session: { ...s, expiresAt } }
      if (r === -1) return { ok: false, reason: 'revoked' }
    }
    throw new Error('console session renewal kept racing other renewals')
  }

  /**
   * Marks a single-use session used; true for the first caller only. `resumeHash`, the SHA-256 of the resume
   * secret the first viewer offered, is kept with it: that viewer may come back (`mayResume`).
   */
  async claimUse (s: ConsoleSession, resumeHash?: string): Promise<boolean> {
    return (await this.mark(s, 'usedAt', resumeHash)) === 1
  }

  /**
   * Whether a used single-use session's own viewer may come back now: while its viewer record stands (a
   * socket that dropped without the gateway noticing yet, or on a gateway that went away) or within the grace
   * after its viewer left (`dropViewer` with a grace).
   */
  async mayResume (sessionId: string): Promise<boolean> {
    return await this.redis.exists(this.k.sessionViewer(sessionId), this.k.sessionViewerLeft(sessionId)) > 0
  }

  /** Revokes a session and tells every gateway; false when it was revoked already or is gone. */
  async revoke (s: ConsoleSession): Promise<boolean> {
    const first = (await this.mark(s, 'revokedAt')) === 1
    // A revoked session frees its console slots at once.
    await this.redis.multi().zrem(this.k.consoleSlotsOfServer(s.serverId), s.id).zrem(this.k.consoleSlotsOfTenant(s.tenantId), s.id).exec()
    return first
  }

  private async mark (s: ConsoleSession, field: 'usedAt' | 'revokedAt', resumeHash = ''): Promise<number> {
    return await (this.redis as unknown as { portholeSessionMark: (...a: Array<string | number>) => Promise<number> })
      .portholeSessionMark(this.k.session(s.id), this.k.sessionByToken(s.tokenHash), field, new Date().toISOString(), this.k.sessionEvents, resumeHash, this.k.eventStream, EVENT_STREAM_MAX_LENGTH)
  }

  /**
   * Records `viewerId` as the session's one live viewer and tells every gateway, so that the one holding
   * the previous viewer closes it. The record lives as long as the session.
   */
  async takeViewer (s: ConsoleSession, viewerId: string): Promise<void> {
    const ttl = Math.max(1, Math.ceil((Date.parse(s.expiresAt) - Date.now()) / 1000))
    const ev: SessionEvent = { type: 'viewer', sessionId: s.id, viewerId }
    await this.redis.multi().set(this.k.sessionViewer(s.id), viewerId, 'EX', ttl).publish(this.k.sessionEvents, JSON.stringify(ev))
      .xadd(this.k.eventStream, 'MAXLEN', '~', EVENT_STREAM_MAX_LENGTH, '*', 'type', 'console', 'data', JSON.stringify(consoleEvent(s, 'connected', new Date().toISOString())))
      .exec()
  }

  /**
   * Clears the viewer record if `viewerId` still holds it (the event stream hears `closed`); with
   * `graceSeconds`, notes for that long that the session's viewer left (a single-use session's own viewer may
   * come back meanwhile: `mayResume`).
   */
  async dropViewer (sessionId: string, viewerId: string, graceSeconds = 0): Promise<void> {
    await (this.redis as unknown as { portholeDropViewer: (...a: Array<string | number>) => Promise<number> })
      .portholeDropViewer(this.k.sessionViewer(sessionId), this.k.session(sessionId), this.k.sessionViewerLeft(sessionId), viewerId, new Date().toISOString(), this.k.eventStream, EVENT_STREAM_MAX_LENGTH, graceSeconds)
  }

  /**
   * Tells the event stream of sessions whose time ran out (`expired`), once each whichever gateway sweeps;
   * the number told. Gateways call it every second.
   */
  async sweepExpired (now = Date.now()): Promise<number> {
    return await (this.redis as unknown as { portholeSweepExpired: (...a: Array<string | number>) => Promise<number> })
      .portholeSweepExpired(this.k.sessionsExpiring, now, this.k.session(''), this.k.eventStream, EVENT_STREAM_MAX_LENGTH)
  }

  /** Which sessions have a live viewer now. */
  async connected (ids: string[]): Promise<boolean[]> {
    if (ids.length === 0) return []
    const v = await this.redis.mget(ids.map(id => this.k.sessionViewer(id)))
    return v.map(x => x !== null)
  }

  /**
   * The API's half of a console job's URL hand-over (see `create`): takes the job's sealed URL; the first
   * caller gets it, every later one gets undefined.
   */
  async takeUrlHandover (jobId: string): Promise<Sealed | undefined> {
    const raw = await this.redis.getdel(this.k.consoleUrlHandover(jobId))
    return raw === null ? undefined : JSON.parse(raw) as Sealed
  }

  get eventsChannel (): string { return this.k.sessionEvents }
}

/** A console session event as the event stream carries it. */
export function consoleEvent (s: ConsoleSession, event: ConsoleEventName, at: string): ConsoleEvent {
  return { sessionId: s.id, tenantId: s.tenantId, serverId: s.serverId, event, at }
}

/** The additional authenticated data a console URL is sealed with for its hand-over: bound to its job. */
export function urlHandoverAad (jobId: string): string { return `console-url-handover:${jobId}` }

export function parseSessionEvent (s: string): SessionEvent | undefined {
  try {
    const e = JSON.parse(s) as SessionEvent
    return typeof e.sessionId === 'string' && (e.type === 'revoked' || e.type === 'viewer' || e.type === 'renewed' || e.type === 'watchers') ? e : undefined
  } catch { return undefined }
}
