/**
 * Shares of console sessions: a second URL for the same screen (a colleague or support watching). Each has
 * its own token, of which Redis keeps the SHA-256; it opens its session only while the session is live (so
 * revoking the session ends every share) and its own expiry has not come. Who watches through a share now is
 * kept per session, and every change is published on the sessions' events channel (`watchers`), so that the
 * owner's page, on whichever gateway, shows it.
 */
import type { Redis } from 'ioredis'
import type { ConsoleShareRecord, ConsoleWatcher } from '@porthole/contracts'
import { keys as keysOf, type Keys } from './redis.js'
import type { SessionEvent } from './sessions.js'

/** A share's record stays readable this long after its expiry (so its viewer is told "expired"). */
const GRACE_SECONDS = 600

export class ConsoleShareStore {
  private readonly k: Keys
  constructor (private readonly redis: Redis, ns: string) {
    this.k = keysOf(ns)
  }

  async create (s: ConsoleShareRecord, now = Date.now()): Promise<void> {
    const ttl = Math.max(1, Math.ceil((Date.parse(s.expiresAt) - now) / 1000))
    await this.redis.multi()
      .set(this.k.consoleShare(s.id), JSON.stringify(s), 'EX', ttl + GRACE_SECONDS)
      .set(this.k.consoleShareByToken(s.tokenHash), s.id, 'EX', ttl)
      .exec()
  }

  /** The share a token opens, if it is known and not expired (its session is checked by the caller). */
  async findByTokenHash (hash: string, now = Date.now()): Promise<ConsoleShareRecord | undefined> {
    const id = await this.redis.get(this.k.consoleShareByToken(hash))
    if (id === null) return undefined
    const s = await this.get(id)
    return s === undefined || s.tokenHash !== hash || Date.parse(s.expiresAt) <= now ? undefined : s
  }

  async get (id: string): Promise<ConsoleShareRecord | undefined> {
    const raw = await this.redis.get(this.k.consoleShare(id))
    return raw === null ? undefined : JSON.parse(raw) as ConsoleShareRecord
  }

  /** Records a viewer watching through a share, for as long as its session lives at most, and tells every gateway. */
  async addWatcher (sessionId: string, viewerId: string, w: ConsoleWatcher, ttlSeconds: number): Promise<void> {
    const key = this.k.consoleWatchers(sessionId)
    const ev: SessionEvent = { type: 'watchers', sessionId }
    await this.redis.multi().hset(key, viewerId, JSON.stringify(w)).expire(key, Math.max(1, Math.ceil(ttlSeconds)))
      .publish(this.k.sessionEvents, JSON.stringify(ev)).exec()
  }

  async dropWatcher (sessionId: string, viewerId: string): Promise<void> {
    const ev: SessionEvent = { type: 'watchers', sessionId }
    await this.redis.multi().hdel(this.k.consoleWatchers(sessionId), viewerId).publish(this.k.sessionEvents, JSON.stringify(ev)).exec()
  }

  /** Who watches the session through its shares now. */
  async watchers (sessionId: string): Promise<ConsoleWatcher[]> {
    const all = await this.redis.hvals(this.k.consoleWatchers(sessionId))
    return all.map(w => JSON.parse(w) as ConsoleWatcher).sort((a, b) => a.since.localeCompare(b.since))
  }
}
