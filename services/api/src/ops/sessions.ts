/**
 * Dashboard sessions: a login exchanges an operator's or admin's API key for a random session token, kept
 * in an HttpOnly cookie. Redis holds only the token's SHA-256, with the key's id and role, a CSRF token and
 * the expiry (the record expires with the session). A session lives only as long as its key: every request
 * checks that the key still exists with that role (for the bootstrap token: that PORTHOLE_ADMIN_TOKEN is still the one it
 * logged in with), so deleting the key logs its dashboards out on every replica at once.
 */
import { randomBytes } from 'node:crypto'
import { safeEqual, sha256Hex } from '@porthole/shared/crypto'
import { keys, type Redis } from '@porthole/shared/store'
import type { Principal } from '../auth.js'

export interface OpsSession {
  keyId: string
  role: 'admin' | 'operator'
  csrf: string
  createdAt: string
  expiresAt: string
  /** For the bootstrap token: a fingerprint of the token logged in with (a rotated token ends the session). */
  bootstrap?: string
}

/** A session as a request holds it: the record and its id (the token's SHA-256, as Redis keys it; never the token). */
export type LiveOpsSession = OpsSession & { id: string }

export class OpsSessions {
  private readonly prefix: string
  private readonly bootstrapPrint: string | undefined

  constructor (private readonly redis: Redis, private readonly ns: string, readonly ttlSeconds: number, adminToken: string | undefined) {
    this.prefix = `${ns}:ops:session:`
    this.bootstrapPrint = adminToken === undefined ? undefined : sha256Hex(`porthole-ops-session\n${adminToken}`)
  }

  /** A new session for an operator or admin principal; the token goes into the cookie and nowhere else. */
  async create (p: Principal, now = Date.now()): Promise<{ token: string, session: OpsSession }> {
    if (p.role !== 'admin' && p.role !== 'operator') throw new Error('dashboard sessions are for operators and admins')
    const token = randomBytes(32).toString('base64url')
    const session: OpsSession = {
      keyId: p.id,
      role: p.role,
      csrf: randomBytes(32).toString('base64url'),
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + this.ttlSeconds * 1000).toISOString()
    }
    if (p.id === 'bootstrap' && this.bootstrapPrint !== undefined) session.bootstrap = this.bootstrapPrint
    await this.redis.set(this.prefix + sha256Hex(token), JSON.stringify(session), 'EX', this.ttlSeconds)
    return { token, session }
  }

  /** The live session of a cookie's token, or undefined (unknown, expired, or its key is gone). */
  async get (token: string | undefined, now = Date.now()): Promise<LiveOpsSession | undefined> {
    if (token === undefined || token.length < 20 || token.length > 100) return undefined
    const id = sha256Hex(token)
    const raw = await this.redis.get(this.prefix + id)
    if (raw === null) return undefined
    const s = JSON.parse(raw) as OpsSession
    if (Date.parse(s.expiresAt) <= now) return undefined
    // Only operator and admin keys log in (create); a record saying otherwise was not written by this code.
    if (s.role !== 'admin' && s.role !== 'operator') return undefined
    if (s.keyId === 'bootstrap') {
      if (this.bootstrapPrint === undefined || s.bootstrap === undefined || !safeEqual(s.bootstrap, this.bootstrapPrint)) return undefined
    } else {
      // The key must still exist with the role the session was made for: a deleted key (or a record naming
      // a customer's key) opens nothing.
      const k = keys(this.ns)
      const hash = await this.redis.get(k.apiKeyById(s.keyId))
      const rec = hash === null ? null : await this.redis.get(k.apiKey(hash))
      if (rec === null || (JSON.parse(rec) as { role?: unknown }).role !== s.role) {
        await this.end(token)
        return undefined
      }
    }
    return { ...s, id }
  }

  /** Ends the session of a cookie's token; its id, for ending its event streams (undefined when there was none). */
  async end (token: string): Promise<string | undefined> {
    const id = sha256Hex(token)
    return await this.redis.del(this.prefix + id) === 1 ? id : undefined
  }
}
